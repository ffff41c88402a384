"""Adapter of rule evaluate_autoencoder: model + data/test.h5 -> test_metrics.json + reconstruction/loss plots."""

from morphoflow.autoencoder.evaluate import run_evaluate_autoencoder
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_evaluate_autoencoder(
    model=snakemake.input.model,
    test=snakemake.input.test,
    history=snakemake.input.history,
    floors=snakemake.input.get("floors"),
    metrics=snakemake.output.metrics,
    reconstructions=snakemake.output.reconstructions,
    loss=snakemake.output.loss,
    config=snakemake.params.config,
)
