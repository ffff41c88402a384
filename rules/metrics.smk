# Metrics and report (issue 5): real test galaxies vs generated ones at the same conditions.
# Every distance sits beside its real-vs-real floor (test split halves A/B by hashed id); see
# docs/metrics.md. Outputs results/metrics.json (schema: package data
# morphoflow/schemas/metrics-output.schema.json), results/summary.md and the figures in results/plots/,
# registered for `snakemake --report`. Entry point: morphoflow.metrics.collect.run_metrics.

PLOT_KINDS = {
    "grid": "Real vs generated stamps at the same conditions",
    "histograms": "Property distributions",
    "power_spectra": "Power spectra",
    "conditional": "Requested vs measured conditions",
    "latent_corner": "Latent space",
    "loss_curves": "Training",
}


rule metrics:
    input:
        unpack(_metrics_inputs),
    output:
        **{
            f"plot_{kind}": report(
                f"{RESULTS}/plots/{kind}.png",
                caption=f"../report/{kind}.rst",
                category=title,
            )
            for kind, title in PLOT_KINDS.items()
        },
        metrics=f"{RESULTS}/metrics.json",
        summary=report(f"{RESULTS}/summary.md", caption="../report/summary.rst", category="Summary"),
    log:
        log_path("metrics"),
    benchmark:
        bench_path("metrics")
    conda:
        "../envs/morphoflow.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(20),
    params:
        config=pick("metrics", "seed", "data.source"),
        # Wall times (timing_s) come from the other rules' benchmark files. They are not declared
        # inputs (no rule outputs them; rules with wildcards have many): every rule upstream of
        # this one has finished, so its benchmark file exists when this job starts.
        benchmarks="benchmarks",
    script:
        "../workflow/scripts/metrics.py"
