"""Adapter of rule preprocess: data/raw.h5 -> cleaned, split, normalised data/{train,val,test}.h5 (+ .tfrecord)."""

from morphoflow.data.preprocess import MIN_TEST_HALF, run_preprocess
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_preprocess(
    raw=snakemake.input.raw,
    train=snakemake.output.train,
    val=snakemake.output.val,
    test=snakemake.output.test,
    cleaning=snakemake.output.cleaning,
    tfrecords=list(snakemake.output.tfrecords),
    config=snakemake.params.config,
    min_test_half=MIN_TEST_HALF,
)
