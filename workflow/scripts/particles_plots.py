"""Adapter for rule particles_plots: corner plot, face-on maps and histograms of sampled vs true stars."""

from morphoflow.particles.pipeline import plot_particles
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
plot_particles(
    snakemake.input.stars,
    dict(zip(snakemake.params.variants, snakemake.input.samples)),
    {"corner": snakemake.output.corner, "maps": snakemake.output.maps, "hist": snakemake.output.hist},
)
