"""Adapter of rule plot_draws: data/test.h5 + autoencoder + flow -> plots/draws.png, samples/draws_spread.json."""

from morphoflow.metrics.draws import run_plot_draws
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_plot_draws(
    test=snakemake.input.test,
    autoencoder=snakemake.input.autoencoder,
    flow=snakemake.input.flow,
    plot=snakemake.output.plot,
    spread=snakemake.output.spread,
    config=snakemake.params.config,
)
