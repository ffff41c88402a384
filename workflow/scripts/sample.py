"""Adapter of rules sample, sample_split: data/<split>.h5 (+ autoencoder, flow) -> samples/{method}[_{split}].h5."""

from morphoflow.runtime import setup_rule
from morphoflow.sampling import run_sample

setup_rule(snakemake.log[0], snakemake.threads)
run_sample(
    test=snakemake.input.test,
    autoencoder=snakemake.input.get("autoencoder") or None,
    flow=snakemake.input.get("flow") or None,
    cosmos=snakemake.input.get("cosmos") or None,
    samples=snakemake.output.samples,
    method=snakemake.wildcards.method,
    config=snakemake.params.config,
)
