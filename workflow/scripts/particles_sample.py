"""Adapter for rule particles_sample: stars of each held-out galaxy, sampled with its own context."""

from morphoflow.particles.pipeline import sample_particle_flow
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
sample_particle_flow(
    snakemake.input.model,
    snakemake.input.stars,
    snakemake.input.test,
    snakemake.output[0],
    seed=snakemake.params.seed,
    batch_size=snakemake.params.batch_size,
)
