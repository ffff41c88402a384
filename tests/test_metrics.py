r"""Distances, floors, C2ST, power spectra and metrics.json from a small synthetic run (real files)."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch

from morphoflow.autoencoder.latents import write_latents
from morphoflow.config import load_config
from morphoflow.contract import ContractError, read_galaxies, write_galaxies
from morphoflow.metrics.c2st import c2st_auc, roc_auc
from morphoflow.metrics.collect import (
    PROPERTIES,
    compare_sets,
    read_benchmarks,
    run_metrics,
    validate_metrics,
    write_metrics,
)
from morphoflow.metrics.distances import frechet_distance, split_halves, wasserstein_1d, with_floor
from morphoflow.metrics.power_spectrum import power_spectrum_1d, power_spectrum_distance
from morphoflow.metrics.summary import format_summary
from morphoflow.metrics.testdata import render_galaxies

torch.set_num_threads(1)


def test_white_noise_power_spectrum_is_flat_at_sigma_squared():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 3.0, (300, 32, 32))
    k, p = power_spectrum_1d(noise)
    assert k[0] > 0 and k[-1] <= 0.5
    mean = p.mean(axis=0)
    np.testing.assert_allclose(mean, 9.0, rtol=0.1)  # σ² in every bin (few modes at low k)
    assert mean.mean() == pytest.approx(9.0, rel=0.02)
    slope = np.polyfit(k, np.log10(mean), 1)[0]
    assert abs(slope) < 0.1  # flat: < 0.05 dex over the whole k range


def test_power_spectrum_of_smooth_blob_falls_with_k():
    y, x = np.mgrid[:32, :32]
    blob = np.exp(-((x - 16) ** 2 + (y - 16) ** 2) / (2 * 3.0**2))[None]
    _, p = power_spectrum_1d(blob)
    assert p[0, 0] > 1e3 * p[0, -1]


def test_set_against_itself_has_zero_distance():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(300, 4))
    assert wasserstein_1d(feats[:, 0], feats[:, 0]) == 0.0
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    imgs = rng.normal(size=(20, 16, 16))
    assert power_spectrum_distance(imgs, imgs) == 0.0


def test_same_distribution_ratio_near_one_and_shifted_far():
    rng = np.random.default_rng(2)
    ids = np.arange(4000)
    a, b = split_halves(ids)
    assert 0.45 < a.mean() < 0.55
    np.testing.assert_array_equal(split_halves(ids)[0], a)  # deterministic
    real = rng.normal(size=4000)
    same = rng.normal(size=4000)
    shifted = rng.normal(0.5, 1.0, size=4000)
    floor = wasserstein_1d(real[a], real[b])
    r_same = with_floor(wasserstein_1d(real[a], same[b]), floor)["ratio"]
    r_shift = with_floor(wasserstein_1d(real[a], shifted[b]), floor)["ratio"]
    assert 0.3 < r_same < 3.0
    assert r_shift > 5.0
    fa, fb = rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3))
    assert frechet_distance(fa, fb) < 0.1 < frechet_distance(fa, fb + 1.0)


def test_roc_auc_known_values():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5


def test_c2st_identical_near_half_and_different_near_one():
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:16, :16]
    blob = 8.0 * np.exp(-((x - 8) ** 2 + (y - 8) ** 2) / 8.0)
    a = rng.normal(size=(120, 1, 16, 16)) + blob
    b = rng.normal(size=(120, 1, 16, 16)) + blob
    c = rng.normal(size=(120, 1, 16, 16)) + 0.3 * blob
    same = c2st_auc(a, b, seed=0, epochs=8)
    diff = c2st_auc(a, c, seed=0, epochs=8)
    assert 0.3 < same < 0.7
    assert diff > 0.9
    assert c2st_auc(a, c, seed=0, epochs=8) == diff  # seeded: reruns are identical


#: The config of the metrics runs below: schema defaults, a short C2ST, a bright bin of 10 galaxies with a floor,
#: and a data source without profile parameters (the parametric baseline is unavailable).
CONFIG = {
    "metrics": load_config(
        overrides={"metrics": {"c2st": {"epochs": 2, "batch_size": 16, "powered": {"epochs": 3, "n_boot": 50}},
                               "bright": {"min_half": 3}, "shapes": {"n_boot": 50}}}
    )["metrics"],
    "seed": 42,
    "data": {"source": "stamps"},
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("metrics")
    real = render_galaxies(30, size=32, seed=11, knot_fraction=(0.0, 0.4))
    flow = render_galaxies(30, size=32, seed=12, knot_fraction=(0.0, 0.4))
    flow.catalog = dict(real.catalog)  # generated at the test galaxies' conditions
    flow.attrs["source"] = "flow"
    gauss = render_galaxies(30, size=32, seed=13, hlr_arcsec=(0.05, 0.1), log10_flux=(3.0, 3.5))
    gauss.catalog = dict(real.catalog)
    gauss.attrs["source"] = "gaussian"
    write_galaxies(d / "test.h5", real)
    write_galaxies(d / "flow.h5", flow)
    write_galaxies(d / "gaussian.h5", gauss)
    with h5py.File(d / "flow.h5", "a") as f:
        f["z"] = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    z_mean = np.random.default_rng(1).normal(size=(30, 3)).astype(np.float32)
    write_latents(d / "latents.h5", z_mean, None, {"id": real.ids}, {"id": ""}, {}, "vae")
    # the train split and its generated counterparts (the powered C2ST)
    train = render_galaxies(40, size=32, seed=11, knot_fraction=(0.0, 0.4), first_id=1000)
    write_galaxies(d / "train.h5", train)
    for name, kw in (("flow", {"seed": 12, "knot_fraction": (0.0, 0.4)}),
                     ("gaussian", {"seed": 13, "hlr_arcsec": (0.05, 0.1), "log10_flux": (3.0, 3.5)})):  # fmt: skip
        gen = render_galaxies(40, size=32, first_id=1000, **kw)
        gen.catalog = dict(train.catalog)
        write_galaxies(d / f"{name}_train.h5", gen)
    with h5py.File(d / "val.h5", "w") as f:
        f["catalog/id"] = np.arange(20)
    (d / "cleaning.json").write_text(json.dumps({"n_in": 170, "n_out": 160}))
    (d / "ae.json").write_text(
        json.dumps({"test_chi2_per_pixel": 1.1, "test_chi2_per_pixel_stamp": 1.2, "test_mse": 0.1, "test_ssim": 0.8})
    )
    (d / "flow.json").write_text(json.dumps({"test_nll_per_dim": 1.3}))
    (d / "hist.csv").write_text(
        "epoch,step,lr,seconds,train_loss,val_loss\n0,10,0.001,1.0,2.0,2.1\n1,20,0.001,2.0,1.5,1.6\n"
    )
    (d / "bench").mkdir()
    (d / "bench" / "train_flow.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    (d / "bench" / "broken.tsv").write_text("nothing here\n")
    (d / "bench" / "metrics.tsv").write_text("s\n9.0\n")  # the rule's own benchmark: left out
    plots = {
        k: d / "plots" / f"{k}.png"
        for k in ("grid", "histograms", "power_spectra", "conditional", "latent_corner", "loss_curves")
    }
    metrics = run_metrics(
        test=d / "test.h5",
        samples={"flow": d / "flow.h5", "gaussian": d / "gaussian.h5"},
        train_samples={"flow": d / "flow_train.h5", "gaussian": d / "gaussian_train.h5"},
        metrics=d / "metrics.json",
        summary=d / "summary.md",
        plots=plots,
        config=CONFIG,
        upstream={
            "latents": d / "latents.h5",
            "train": d / "train.h5",
            "val": d / "val.h5",
            "cleaning": d / "cleaning.json",
            "ae_metrics": d / "ae.json",
            "flow_metrics": d / "flow.json",
            "ae_history": d / "hist.csv",
            "flow_history": d / "hist.csv",
        },
        benchmarks=d / "bench",
        progress=False,
    )
    return d, metrics, plots


def test_metrics_json_validates_and_is_finite(run_dir):
    d, metrics, plots = run_dir
    on_disk = json.loads((d / "metrics.json").read_text())
    assert on_disk == metrics
    validate_metrics(on_disk)

    def finite(node):
        if isinstance(node, dict):
            return all(finite(v) for v in node.values())
        if isinstance(node, float):
            return math.isfinite(node)
        return True

    assert finite(on_disk)
    assert on_disk["format_version"] == 2
    assert on_disk["data"] == {"n_test": 30, "n_train": 40, "n_val": 20, "cleaning": {"n_in": 170, "n_out": 160}}
    assert on_disk["autoencoder"]["test_ssim"] == 0.8 and on_disk["flow"]["test_nll_per_dim"] == 1.3
    assert on_disk["timing_s"] == {"train_flow": 12.5}
    for model in ("flow", "gaussian"):
        g = on_disk["generation"][model]
        assert set(g["morphology"]) == {
            "flux",
            "r50",
            "sigma",
            "e1",
            "e2",
            "gini",
            "m20",
            "concentration",
            "asymmetry",
            "smoothness",
        }
        assert set(g["conditional"]) == {"mag", "hlr_arcsec"}
        assert "psf_free" in g
        # issue 13: powered C2ST with interval and control, HSM biases, the bright bin with floors
        pc = g["c2st_powered"]
        assert pc["n_train"] == 40 and pc["n_test"] == 60 and pc["interval"][0] <= pc["auc"] <= pc["interval"][1]
        assert pc["control"]["n_train"] == min(
            np.bincount(split_halves(np.arange(1000, 1040), "metrics-train-half")[0])
        )
        assert set(g["shape_bias"]) == {"e_abs", "sigma"} and g["shape_bias"]["sigma"]["n"] > 20
        br = g["bright"]
        assert br["n"] == 10 and br["mag_max"] <= np.sort(read_galaxies(d / "test.h5").catalog["mag"])[9] + 1e-9
        assert "ratio" in br["morphology"]["r50"] and "ratio" in br["power_spectrum"]
        assert br["c2st_powered"]["n_test"] == 20 and "control" in br["c2st_powered"]
        assert br["shape_bias"]["sigma"]["n"] <= 10
    assert "stamps" in on_disk["generation"]["parametric"]["unavailable"]
    # real galaxies measure their own conditions well
    assert on_disk["generation"]["flow"]["conditional"]["mag"]["corr_real"] > 0.9
    for p in plots.values():
        assert p.stat().st_size > 1000


def test_metrics_separate_the_bad_model(run_dir):
    _, metrics, _ = run_dir
    flow, gauss = metrics["generation"]["flow"], metrics["generation"]["gaussian"]
    # the "gaussian" set is fainter and smaller: its size/flux distances are far above the floor
    assert gauss["morphology"]["r50"]["ratio"] > 3 * flow["morphology"]["r50"]["ratio"]
    assert gauss["morphology"]["flux"]["ratio"] > 3.0
    assert gauss["frechet_morphology"]["ratio"] > flow["frechet_morphology"]["ratio"]
    assert gauss["power_spectrum"]["ratio"] > flow["power_spectrum"]["ratio"]
    assert gauss["c2st_auc"] > 0.9
    assert flow["morphology"]["r50"]["floor"] > 0
    # the powered test too: the bad model far from its control, the good one not
    assert gauss["c2st_powered"]["auc"] > 0.9 > flow["c2st_powered"]["auc"]
    assert abs(gauss["shape_bias"]["sigma"]["bias_pct"]) > 5 * abs(flow["shape_bias"]["sigma"]["bias_pct"])


def test_bright_bin_too_small_for_a_floor_says_so():
    rng = np.random.default_rng(0)
    props = {k: rng.normal(size=40) for k in PROPERTIES}
    a = np.zeros(40, bool)
    a[:10] = True
    out = compare_sets(props, props, a, ~a, min_half=25)
    assert out["morphology"]["r50"] == {"too_small": True, "n_a": 10, "n_b": 30, "min_half": 25}
    assert out["frechet_morphology"]["too_small"] and "morphology_mean_ratio" not in out
    assert "bin too small" in format_summary(
        {"data": {"n_test": 40}, "generation": {"flow": {**out, "power_spectrum": out["frechet_morphology"]}}},
        CONFIG["metrics"]["targets"],
    )


def _table_rows(text: str) -> dict[str, list[str]]:
    r"""The rows ``| label | cell | ... |`` of a Markdown text by label (the first of equal labels)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("| ") and line.endswith(" |"):
            label, *cells = [c.strip() for c in line[2:-2].split(" | ")]
            rows.setdefault(label, cells)
    return rows


def test_summary_marks_targets(run_dir):
    d, metrics, _ = run_dir
    text = (d / "summary.md").read_text()
    assert "| statistic | flow | flow bright | gaussian | gaussian bright |" in text
    assert "✗" in text and "✓" in text
    assert text == format_summary(metrics, CONFIG["metrics"]["targets"])
    assert "Data: n_train = 40, n_val = 20, n_test = 30." in text
    assert "- parametric: unavailable (data source 'stamps'" in text
    rows = _table_rows(text)
    gen = metrics["generation"]
    cols = [
        (m, b) for name in ("flow", "gaussian") for m, b in ((name, gen[name]), (name + " bright", gen[name]["bright"]))
    ]
    target = CONFIG["metrics"]["targets"]["ratio"]
    # one row per morphology statistic, a cell per model and bin holding the values of metrics.json
    w1_rows = [label for label in rows if label.startswith("W1 ")]
    assert w1_rows == [f"W1 {p}" for p in PROPERTIES]
    for p in PROPERTIES:
        for (model, block), cell in zip(cols, rows[f"W1 {p}"], strict=True):
            e = block["morphology"][p]
            mark = "✓" if e["ratio"] <= target else "✗"
            assert cell == f"{e['w1']:.4g} / {e['floor']:.4g} = **{e['ratio']:.2f}** {mark}", (p, model)
    for (_, block), cell in zip(cols, rows["mean morphology ratio"], strict=True):
        r = block["morphology_mean_ratio"]
        assert cell == f"**{r:.2f}** {'✓' if r <= target else '✗'}"
    for (_, block), cell in zip(cols, rows["Fréchet morphology"], strict=True):
        e = block["frechet_morphology"]
        if e.get("failed"):  # 10 features, 5 galaxies per half of the bright bin
            assert cell.startswith("failed (") and block is not gen["flow"]
            continue
        assert cell.startswith(f"{e['distance']:.4g} / {e['floor']:.4g} = **{e['ratio']:.2f}**")
    halves = rows["C2ST AUC (test halves)"]
    for model, cell in (("flow", halves[0]), ("gaussian", halves[2])):
        assert cell.startswith(f"{gen[model]['c2st_auc']:.3f} (floor {gen[model]['c2st_auc_floor']:.3f})")
    assert halves[2].endswith("✗") and halves[1] == "—"  # the bad model is told apart; no halves C2ST in the bin
    for (_, block), cell in zip(cols, rows["powered C2ST AUC [95 %]"], strict=True):
        e = block["c2st_powered"]
        assert cell.startswith(f"{e['auc']:.3f} [{e['interval'][0]:.3f}, {e['interval'][1]:.3f}] (control ")
    for (_, block), cell in zip(cols, rows["HSM σ bias"], strict=True):
        assert cell.startswith(f"{block['shape_bias']['sigma']['bias_pct']:+.1f} ± ")
    assert rows["powered C2ST AUC [95 %]"][2].endswith("✗")
    for cond in ("mag", "hlr_arcsec"):
        for model, cell in zip(("flow", "gaussian"), rows[f"Spearman requested vs measured {cond}"][::2], strict=True):
            e = gen[model]["conditional"][cond]
            assert cell.startswith(f"{e['corr_generated']:.3f} (real {e['corr_real']:.3f})")
    assert rows["test_ssim"] == ["0.8"] and rows["test_nll_per_dim"] == ["1.3"]
    assert rows["train_flow"] == ["12.5"] and "metrics" not in rows
    assert "### PSF-free (noiseless) images" in text
    # the targets come from the config: a looser ratio target passes every ratio
    loose = format_summary(metrics, {**CONFIG["metrics"]["targets"], "ratio": 1e9})
    assert all(cell.endswith("✓") for p in PROPERTIES for cell in _table_rows(loose)[f"W1 {p}"])


def test_summary_says_whether_flow_beats_parametric(run_dir):
    _, metrics, _ = run_dir
    gen = dict(metrics["generation"])
    gen["parametric"] = gen.pop("gaussian")  # any third set stands in for the baseline
    text = format_summary({**metrics, "generation": gen}, CONFIG["metrics"]["targets"])
    lines = [line for line in text.splitlines() if line.startswith("- ") and "parametric (" in line]
    assert [line.split(":")[0] for line in lines] == [f"- {p}" for p in PROPERTIES]
    w1 = lambda m, p: gen[m]["morphology"][p]["w1"]  # noqa: E731
    for p, line in zip(PROPERTIES, lines, strict=True):
        word = "beats" if w1("flow", p) < w1("parametric", p) else "does not beat"
        assert f"all: flow {word} parametric" in line and "bright: flow" in line


def test_write_metrics_rejects_bad_content(tmp_path):
    good = {"format_version": 2, "data": {"n_test": 3}, "particles": {"w1": 0.2}}
    write_metrics(tmp_path / "m.json", good)
    assert json.loads((tmp_path / "m.json").read_text())["particles"] == {"w1": 0.2}
    with pytest.raises(ValueError, match=r"data\.n_test"):
        write_metrics(tmp_path / "bad.json", {"format_version": 2, "data": {"n_test": "many"}})
    with pytest.raises(ValueError, match=r"generation\.flow\.c2st_auc"):
        validate_metrics(
            {"format_version": 2, "data": {"n_test": 3}, "generation": {"flow": {"c2st_auc": float("nan")}}}
        )
    assert not (tmp_path / "bad.json").exists()
    # a failed statistic is written as its failure counts, never as NaN
    from morphoflow.metrics.collect import _entry

    assert _entry(float("nan"), 1.0, 2, 5) == {"failed": True, "n_failed_real": 2, "n_failed_generated": 5}


def test_samples_with_other_ids_are_rejected(run_dir, tmp_path):
    d, _, _ = run_dir
    other = read_galaxies(d / "flow.h5")
    other.catalog["id"] = other.catalog["id"] + 1000
    write_galaxies(tmp_path / "flow.h5", other)
    with pytest.raises(ContractError, match=r"flow\.h5.*catalog/id"):
        run_metrics(
            test=d / "test.h5",
            samples={"flow": tmp_path / "flow.h5"},
            metrics=tmp_path / "m.json",
            config=CONFIG,
            progress=False,
        )
    assert not (tmp_path / "m.json").exists()
    with pytest.raises(ValueError, match="unknown upstream inputs"):
        run_metrics(
            test=d / "test.h5",
            samples={"flow": d / "flow.h5"},
            metrics=tmp_path / "m.json",
            config=CONFIG,
            upstream={"latent": d / "latents.h5"},
            progress=False,
        )


def test_read_benchmarks_skips_unreadable(tmp_path):
    (tmp_path / "a.tsv").write_text("s\th:m:s\n1.5\t0:00:01\n2.5\t0:00:02\n")
    (tmp_path / "metrics.tsv").write_text("s\n9.0\n")
    assert read_benchmarks(sorted(tmp_path.glob("*.tsv")), skip=("metrics",)) == {"a": 2.0}
