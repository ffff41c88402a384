"""Adapter of rule particles_clean: raw stars -> cleaned, aligned stars + cleaning report (JSON counts)."""

from morphoflow.particles.pipeline import run_particles_clean
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_particles_clean(
    raw_stars=snakemake.input.raw_stars,
    stars=snakemake.output.stars,
    cleaning=snakemake.output.cleaning,
    config=snakemake.params.config,
)
