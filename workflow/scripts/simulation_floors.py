"""Adapter of rule simulation_floors: data/test.h5 + simulate config -> data/test_floors.json (oracle chi2 floors)."""

from morphoflow.data.floors import run_simulation_floors
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_simulation_floors(test=snakemake.input.test, floors=snakemake.output.floors, config=snakemake.params.config)
