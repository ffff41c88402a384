"""Adapter of rule particles_metrics: per-galaxy metrics with floors, latent vs global -> metrics.json."""

from morphoflow.particles.pipeline import run_particles_metrics
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
variants = snakemake.params.config["particles"]["variants"]
run_particles_metrics(
    stars=snakemake.input.stars,
    samples=dict(zip(variants, snakemake.input.samples, strict=True)),
    models=dict(zip(variants, snakemake.input.models, strict=True)),
    train=snakemake.input.train,
    val=snakemake.input.val,
    test=snakemake.input.test,
    cleaning=snakemake.input.cleaning,
    plots=list(snakemake.input.plots),
    autoencoder=snakemake.input.autoencoder,
    metrics=snakemake.output.metrics,
    config=snakemake.params.config,
    benchmarks=snakemake.params.benchmarks,
)
