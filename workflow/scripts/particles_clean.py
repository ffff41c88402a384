"""Adapter for rule particles_clean: raw stars -> cleaned, aligned stars + cleaning report (JSON counts)."""

from morphoflow.particles.pipeline import clean_particles
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
clean_particles(snakemake.input[0], snakemake.output.stars, snakemake.output.report, dict(snakemake.params.clean))
