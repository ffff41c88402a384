"""Adapter for rule cosmos: COSMOS training sample tarball -> results/data/raw.h5."""

from morphoflow.cosmos import build_cosmos_raw
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
build_cosmos_raw(
    snakemake.input[0],
    snakemake.output[0],
    snakemake.params.cosmos,
    sample=snakemake.params.sample,
    known_hash=snakemake.params.known_hash,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
