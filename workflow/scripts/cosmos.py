"""Adapter of rule cosmos: COSMOS training sample tarball -> data/raw.h5.

download.known_hash is not a param (pinning the recorded hash reruns nothing); it comes from the config.
"""

from morphoflow.data.cosmos import run_cosmos
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_cosmos(
    tarball=snakemake.input.tarball,
    raw=snakemake.output.raw,
    config={
        **snakemake.params.config,
        "download": {**snakemake.params.config["download"], "known_hash": snakemake.config["download"]["known_hash"]},
    },
    threads=snakemake.threads,
)
