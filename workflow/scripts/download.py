"""Adapter of rule download: resumable, checksummed download of the COSMOS tarball.

Only url is the rule's param (what reruns it); known_hash, retries and timeouts come from the config
(a pinned known_hash is checked against the recorded hash at DAG load and on the file).
"""

from morphoflow.data.download import run_download
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_download(tarball=snakemake.output.tarball, config={"download": snakemake.config["download"]})
