"""Adapter of rule evaluate_flow: flow model + latents/test.h5 -> flow/test_metrics.json."""

from morphoflow.flow.evaluate import run_evaluate_flow
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
run_evaluate_flow(model=snakemake.input.model, test=snakemake.input.test, metrics=snakemake.output.metrics)
