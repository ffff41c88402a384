"""Adapter for rule evaluate_flow: flow model + test latents -> results/flow/test_metrics.json."""

from morphoflow.flow import evaluate_flow_file
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)
evaluate_flow_file(snakemake.input.model, snakemake.input.test, snakemake.output[0])
