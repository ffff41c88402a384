# Metrics and report (issue 5): real test galaxies vs generated ones at the same conditions.
# Every distance sits beside its real-vs-real floor (test split halves A/B by hashed id); see
# docs/metrics.md. Outputs results/metrics.json (schema docs/metrics.schema.json),
# results/summary.md and the figures in results/plots/, registered for `snakemake --report`.

PLOT_KINDS = {
    "grid": "Real vs generated stamps at the same conditions",
    "histograms": "Property distributions",
    "power_spectra": "Power spectra",
    "conditional": "Requested vs measured conditions",
    "latent_corner": "Latent space",
    "loss_curves": "Training",
}


def _stage_exists(stage):
    return (Path(workflow.basedir) / "rules" / f"{stage}.smk").exists()


def _metrics_inputs(wildcards):
    """Required: the test split and the samples; the other stages' summaries when their rule file exists."""
    inputs = {
        "test": f"{RESULTS}/data/test.h5",
        **{f"samples_{m}": f"{RESULTS}/samples/{m}.h5" for m in config["metrics"]["models"]},
    }
    if _stage_exists("data"):
        inputs.update(
            train=f"{RESULTS}/data/train.h5",
            val=f"{RESULTS}/data/val.h5",
            cleaning=f"{RESULTS}/data/cleaning.json",
        )
    if _stage_exists("autoencoder"):
        inputs.update(
            latents=f"{RESULTS}/latents/test.h5",
            ae_metrics=f"{RESULTS}/autoencoder/test_metrics.json",
            ae_history=f"{RESULTS}/autoencoder/history.csv",
        )
    if _stage_exists("flow"):
        inputs.update(
            flow_metrics=f"{RESULTS}/flow/test_metrics.json",
            flow_history=f"{RESULTS}/flow/history.csv",
        )
    return inputs


rule metrics:
    input:
        unpack(_metrics_inputs),
    output:
        metrics=f"{RESULTS}/metrics.json",
        summary=report(f"{RESULTS}/summary.md", caption="../report/summary.rst", category="Summary"),
        **{
            f"plot_{kind}": report(
                f"{RESULTS}/plots/{kind}.png",
                caption=f"../report/{kind}.rst",
                category=title,
            )
            for kind, title in PLOT_KINDS.items()
        },
    params:
        metrics=config["metrics"],
        seed=config["seed"],
        # Wall times (timing_s) come from the other rules' benchmark files. They are not declared
        # inputs (no rule outputs them; rules with wildcards have many): every rule upstream of
        # this one has finished, so its benchmark file exists when this job starts.
        benchmark_dir="benchmarks",
    log:
        log_path("metrics"),
    benchmark:
        bench_path("metrics")
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(20),
    conda:
        "../envs/morphoflow.yaml"
    script:
        "../workflow/scripts/metrics.py"
