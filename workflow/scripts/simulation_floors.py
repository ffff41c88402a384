"""Adapter for rule simulation_floors: data/test.h5 + simulate config -> test_floors.json (oracle chi2 floors)."""

from morphoflow.floors import run_floors
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
run_floors(
    snakemake.input.test,
    snakemake.output[0],
    snakemake.params.simulate,
    int(snakemake.params.seed),
    float(snakemake.params.fraction),
)
