"""Adapter of rule particles_simulate: analytic star-particle galaxies -> particles/raw_stars.h5."""

from morphoflow.particles.pipeline import run_particles_simulate
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_particles_simulate(raw_stars=snakemake.output.raw_stars, config=snakemake.params.config)
