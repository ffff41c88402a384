"""Adapter of rule simulate: the embedded GalSim data set -> data/raw.h5."""

from morphoflow.data.simulate import run_simulate
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_simulate(raw=snakemake.output.raw, config=snakemake.params.config, threads=snakemake.threads)
