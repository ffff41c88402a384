"""Adapter for rule particles_metrics: per-galaxy metrics with floors, latent vs global -> results/metrics.json."""

from morphoflow.particles.pipeline import particle_metrics
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
particle_metrics(
    snakemake.input.stars,
    dict(zip(snakemake.params.variants, snakemake.input.samples)),
    dict(zip(snakemake.params.variants, snakemake.input.models)),
    dict(zip(["train", "val", "test"], snakemake.input.latents)),
    snakemake.input.cleaning,
    snakemake.output[0],
    seed=snakemake.params.seed,
    cfg=dict(snakemake.params.metrics),
    autoencoder_metrics=snakemake.input.get("autoencoder"),
    plot_paths=list(snakemake.input.plots),
    bench_dir=snakemake.params.bench_dir,
)
