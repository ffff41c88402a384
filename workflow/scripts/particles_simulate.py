"""Adapter for rule particles_simulate: analytic star-particle galaxies -> results/particles/raw_stars.h5."""

from morphoflow.particles.pipeline import simulate_particles
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
simulate_particles(snakemake.output[0], snakemake.params.seed, dict(snakemake.params.simulate))
