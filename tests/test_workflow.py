"""The whole DAG on the tiny test config, run by Snakemake for real in a temporary copy of the workflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _workflow import copy_workflow

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        # Targets come first: --configfile and --forcerun take several values and would swallow them.
        [SNAKEMAKE, *args, "--configfile", "config/test.yaml"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("run1"))
    snakemake(work, "results/metrics.json", "--cores", "2")
    return work


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "timing_s"}


def test_dag_produces_metrics_summary_plots_logs(tiny_run):
    metrics = json.loads((tiny_run / "results/metrics.json").read_text())
    assert metrics["format_version"] == 2
    assert metrics["data"]["n_test"] > 0 and metrics["data"]["n_train"] > metrics["data"]["n_test"]
    for kind in ("flow", "gaussian", "parametric"):
        gen = metrics["generation"][kind]
        assert 0.0 <= gen["c2st_auc"] <= 1.0
        assert set(gen["morphology"]) >= {"flux", "r50", "gini", "m20", "concentration", "asymmetry", "smoothness"}
        # issue 13: powered C2ST (train split vs its counterparts) with control, HSM biases, the bright bin
        pc = gen["c2st_powered"]
        assert pc["n_train"] == metrics["data"]["n_train"] and pc["n_test"] == 2 * metrics["data"]["n_test"]
        assert "interval" in pc and 0.0 <= pc["control"]["auc"] <= 1.0
        assert {"e_abs", "sigma"} == set(gen["shape_bias"])
        bright = gen["bright"]
        assert 0 < bright["n"] < metrics["data"]["n_test"] and "c2st_powered" in bright and "shape_bias" in bright
        # the tiny test split's bright third is too small for a floor: the entries say so
        assert bright["morphology"]["r50"]["too_small"] and bright["power_spectrum"]["too_small"]
    # the simulated data set's oracle floors: the exact redraw leaves only noise, the clump-free one more
    ae = metrics["autoencoder"]
    assert abs(ae["floor_exact_chi2_per_pixel"] - 1.0) < 0.1
    assert ae["floor_smooth_chi2_per_pixel"] > ae["floor_exact_chi2_per_pixel"]
    assert ae["test_chi2_per_pixel"] > 0.5
    assert (tiny_run / "results/summary.md").read_text().strip()
    assert list((tiny_run / "results/plots").glob("*.png"))
    # one set of conditions drawn 8 times: the detail maps differ (two-level model), so do full draws
    draws = json.loads((tiny_run / "results/samples/draws_spread.json").read_text())
    assert len(draws["spread"]["detail"]) == 3 and min(draws["spread"]["detail"]) > 0.0
    assert min(draws["spread"]["flow"]) > 0.0
    assert (tiny_run / "results/plots/draws.png").stat().st_size > 10_000
    rules_run = {p.stem for p in (tiny_run / "benchmarks").glob("*.tsv")}
    assert {"preprocess", "train_autoencoder", "train_flow", "sample_flow", "sample_gaussian"} <= rules_run
    assert {"sample_parametric", "sample_flow_train", "sample_gaussian_train", "sample_parametric_train"} <= rules_run
    summary = (tiny_run / "results/summary.md").read_text()
    assert "| statistic | flow | flow bright | gaussian | gaussian bright | parametric | parametric bright |" in summary
    assert "powered C2ST AUC" in summary and "bin too small for a floor" in summary and "- gini: all: flow " in summary
    assert {p.stem for p in (tiny_run / "logs").glob("*.log")} >= rules_run
    assert set(metrics["timing_s"]) >= rules_run - {"metrics"}


def test_rerun_gives_the_same_metrics(tiny_run, tmp_path):
    # Same cores as the first run: torch's CPU reductions depend on the thread count (a different
    # count moves metrics in the ninth digit); the data themselves are thread-count independent.
    second = copy_workflow(tmp_path / "run2")
    snakemake(second, "results/metrics.json", "--cores", "2")
    first = json.loads((tiny_run / "results/metrics.json").read_text())
    again = json.loads((second / "results/metrics.json").read_text())
    assert without_timing(first) == without_timing(again)


def test_report_embeds_every_plot(tiny_run):
    snakemake(tiny_run, "--report", "results/report.html")
    html = (tiny_run / "results/report.html").read_text(errors="replace")
    plots = sorted(p.name for p in (tiny_run / "results/plots").glob("*.png"))
    registered = {"grid", "histograms", "power_spectra", "conditional", "latent_corner", "loss_curves"}
    assert {f"{k}.png" for k in registered} <= set(plots)
    # the report is one self-contained file: each registered plot is embedded as PNG data, with its caption
    for kind in registered:
        assert f"data:image/png;charset=utf8;filename={kind}.png;base64,iVBORw0KGgo" in html, f"{kind}.png not embedded"
    assert "data:text/markdown;" in html and "summary.md" in html


def test_dry_run_lists_the_dag_and_lint_is_clean(tiny_run):
    dry = snakemake(tiny_run, "results/metrics.json", "-n", "--forcerun", "train_flow")
    assert "train_flow" in dry.stdout and "sample" in dry.stdout
    lint = snakemake(tiny_run, "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_bad_config_fails_at_load_naming_the_key(tmp_path):
    work = copy_workflow(tmp_path / "bad")
    proc = snakemake(work, "-n", "--config", "seed=-3", check=False)
    assert proc.returncode != 0
    assert "seed" in proc.stderr + proc.stdout
