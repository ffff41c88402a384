"""Adapter for rule evaluate_autoencoder: model + data/test.h5 -> test_metrics.json + reconstruction/loss plots."""

from morphoflow.evaluate import evaluate_autoencoder
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
evaluate_autoencoder(
    snakemake.input.model,
    snakemake.input.test,
    snakemake.input.history,
    snakemake.output.metrics,
    snakemake.output.reconstructions,
    snakemake.output.loss,
    snakemake.params.autoencoder,
    floors_path=snakemake.input.get("floors"),
)
