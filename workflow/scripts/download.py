"""Adapter of rule download: resumable, checksummed download of the COSMOS tarball.

Only url and known_hash are the rule's params (what reruns it); retries and timeouts come from the config.
"""

from morphoflow.data.download import run_download
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_download(tarball=snakemake.output.tarball, config={"download": snakemake.config["download"]})
