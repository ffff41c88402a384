"""Adapter of rule cosmos: COSMOS training sample tarball -> data/raw.h5."""

from morphoflow.data.cosmos import run_cosmos
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_cosmos(
    tarball=snakemake.input.tarball,
    raw=snakemake.output.raw,
    config=snakemake.params.config,
    threads=snakemake.threads,
)
