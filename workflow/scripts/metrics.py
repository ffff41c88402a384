"""Adapter of rule metrics: test split + samples (+ the stages' summaries) -> metrics.json, summary.md, plots."""

from morphoflow.metrics.collect import run_metrics
from morphoflow.runtime import setup_rule

setup_rule(snakemake.log[0], snakemake.threads)
inputs, outputs = dict(snakemake.input.items()), dict(snakemake.output.items())
run_metrics(
    test=inputs.pop("test"),
    samples={k[len("samples_") :]: inputs.pop(k) for k in list(inputs) if k.startswith("samples_")},
    train_samples={k[len("train_samples_") :]: inputs.pop(k) for k in list(inputs) if k.startswith("train_samples_")},
    metrics=outputs["metrics"],
    summary=outputs["summary"],
    plots={k[len("plot_") :]: v for k, v in outputs.items() if k.startswith("plot_")},
    config=snakemake.params.config,
    upstream=inputs,
    benchmarks=snakemake.params.benchmarks,
)
