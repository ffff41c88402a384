"""Adapter for rule particles_render: cleaned stars -> galaxy images in the data contract (results/data/raw.h5)."""

from morphoflow.particles.pipeline import render_particles
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
render_particles(snakemake.input[0], snakemake.output[0], snakemake.params.seed, dict(snakemake.params.render))
