"""Adapter of rule simulate: the embedded GalSim data set -> results/data/raw.h5."""

from morphoflow.runtime import setup_rule
from morphoflow.simulate import run_simulate

snakemake = snakemake  # noqa: F821  (injected by Snakemake)
setup_rule(log=snakemake.log[0], threads=snakemake.threads)
run_simulate(
    {"simulate": snakemake.params.simulate, "seed": snakemake.params.seed},
    snakemake.output[0],
    threads=snakemake.threads,
)
