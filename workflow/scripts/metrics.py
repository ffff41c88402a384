# Adapter of rule `metrics`: results/metrics.json, results/summary.md and results/plots/*.png.
from pathlib import Path

from morphoflow.metrics.collect import run_metrics
from morphoflow.runtime import setup_rule

setup_rule(log=snakemake.log[0], threads=snakemake.threads)  # noqa: F821

inp, out, params = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
run_metrics(
    test=inp.test,
    samples={m: inp[f"samples_{m}"] for m in params.metrics["models"]},
    metrics_json=out.metrics,
    summary_md=out.summary,
    plots={k[len("plot_"):]: v for k, v in out.items() if k.startswith("plot_")},
    config=params.metrics,
    seed=params.seed,
    latents=inp.get("latents"),
    train=inp.get("train"),
    val=inp.get("val"),
    cleaning=inp.get("cleaning"),
    ae_metrics=inp.get("ae_metrics"),
    flow_metrics=inp.get("flow_metrics"),
    ae_history=inp.get("ae_history"),
    flow_history=inp.get("flow_history"),
    benchmarks=sorted(Path(params.benchmark_dir).glob("*.tsv")),
)
