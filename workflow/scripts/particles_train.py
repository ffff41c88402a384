"""Adapter for rule particles_train: the star flow of one context variant (latent or global)."""

from morphoflow.particles.pipeline import train_particle_flow
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
train_particle_flow(
    snakemake.input.stars,
    snakemake.input.train,
    snakemake.input.val,
    snakemake.output.model,
    snakemake.output.history,
    snakemake.wildcards.variant,
    dict(snakemake.params.particles),
    seed=snakemake.params.seed,
    workdir=snakemake.params.workdir,
)
