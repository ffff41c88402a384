"""Adapter of rule particles_render: cleaned stars -> galaxy images in the data contract (data/raw.h5)."""

from morphoflow.particles.pipeline import run_particles_render
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_particles_render(stars=snakemake.input.stars, raw=snakemake.output.raw, config=snakemake.params.config)
