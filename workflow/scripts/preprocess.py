"""Adapter of rule preprocess: raw.h5 -> cleaned, split, normalised {train,val,test}.h5 (+ .tfrecord)."""

from morphoflow.preprocess import run_preprocess
from morphoflow.runtime import setup_rule

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
setup_rule(log=snakemake.log[0], threads=snakemake.threads)
splits = ("train", "val", "test")
tfrecords = snakemake.output.tfrecords
run_preprocess(
    snakemake.input.raw,
    {s: snakemake.output[s] for s in splits},
    dict(zip(splits, tfrecords)) if len(tfrecords) else None,
    snakemake.output.cleaning,
    snakemake.params.preprocess,
    snakemake.params.seed,
)
