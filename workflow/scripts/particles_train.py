"""Adapter of rule particles_train: the star flow of one context variant (latent or global)."""

from morphoflow.particles.pipeline import run_particles_train
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_particles_train(
    stars=snakemake.input.stars,
    train=snakemake.input.train,
    val=snakemake.input.val,
    model=snakemake.output.model,
    history=snakemake.output.history,
    variant=snakemake.wildcards.variant,
    checkpoints=snakemake.params.checkpoints,
    config=snakemake.params.config,
)
