"""Adapter of rule particles_sample: stars of each held-out galaxy, sampled with its own context."""

from morphoflow.particles.pipeline import run_particles_sample
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_particles_sample(
    model=snakemake.input.model,
    stars=snakemake.input.stars,
    test=snakemake.input.test,
    samples=snakemake.output.samples,
    config=snakemake.params.config,
)
