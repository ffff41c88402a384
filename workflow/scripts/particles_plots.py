"""Adapter of rule particles_plots: corner plot, face-on maps and histograms of sampled vs true stars."""

from morphoflow.particles.pipeline import run_particles_plots
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
variants = snakemake.params.config["particles"]["variants"]
run_particles_plots(
    stars=snakemake.input.stars,
    samples=dict(zip(variants, snakemake.input.samples, strict=True)),
    corner=snakemake.output.corner,
    maps=snakemake.output.maps,
    hist=snakemake.output.hist,
)
