"""Adapter for rule download: resumable, checksummed download of the COSMOS tarball."""

from morphoflow.download import run_download
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
run_download(
    snakemake.params.url,
    snakemake.output[0],
    known_hash=snakemake.params.known_hash,
    retries=snakemake.config["download"]["retries"],
    timeout=snakemake.config["download"]["timeout_s"],
)
