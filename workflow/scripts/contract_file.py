"""Adapter of rule contract_file: your own contract HDF5 file (data.path) -> data/raw.h5."""

from morphoflow.data.contract_file import run_contract_file
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_contract_file(
    path=snakemake.input.path,
    raw=snakemake.output.raw,
    record=snakemake.output.record,
    config=snakemake.params.config,
)
