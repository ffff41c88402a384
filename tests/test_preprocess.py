"""Rule preprocess: cleaning, target PSF, hashed split, normalisation, on real simulated files."""

from __future__ import annotations

import json
from pathlib import Path

import galsim
import h5py
import numpy as np
import pytest
import torch

from morphoflow.config import load_config
from morphoflow.contract import ContractError, read_galaxies, write_galaxies
from morphoflow.data.preprocess import (
    PreprocessError,
    clean,
    convolve_to_target,
    denormalize,
    load_raw,
    normalize,
    run_preprocess,
    split_ids,
)
from morphoflow.data.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (ROOT / "config/config.yaml", ROOT / "config/test.yaml")
SPLITS = ("train", "val", "test")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config(*CONFIGS, overrides={"simulate": {"n_galaxies": 40}})


@pytest.fixture(scope="module")
def galaxies(config):
    return simulate(config, n_threads=1)


def rule_config(seed: int, **preprocess) -> dict:
    r"""The ``config`` of rule preprocess (``pick("preprocess", "seed")``) with ``preprocess`` overrides."""
    config = load_config(*CONFIGS, overrides={"seed": seed, "preprocess": preprocess})
    return {"preprocess": config["preprocess"], "seed": config["seed"]}


def outputs(tmp_path: Path) -> tuple[dict[str, Path], Path]:
    return {s: tmp_path / f"{s}.h5" for s in SPLITS}, tmp_path / "cleaning.json"


def preprocess(raw: Path, h5: dict[str, Path], cleaning: Path, config: dict) -> dict:
    return run_preprocess(raw=raw, **h5, cleaning=cleaning, config=config)


def write_raw(path: Path, gs) -> Path:
    write_galaxies(path, gs, raw=True)
    return path


def test_cleaning_counts_on_crafted_inputs(tmp_path, galaxies):
    gs = galaxies.subset(np.arange(len(galaxies)))
    gs.images = gs.images.copy()
    gs.truth = gs.truth.copy()
    gs.catalog = {k: v.copy() for k, v in gs.catalog.items()}
    gs.images[0, 0, 5, 5] = np.nan  # non-finite pixel
    h = gs.images.shape[-1]
    gs.truth[1] = np.roll(gs.truth[1], (h // 2, h // 2), axis=(1, 2))  # source cut by the stamp corner
    gs.catalog["mag"][2] = 40.0  # catalog value out of range
    raw = write_raw(tmp_path / "raw.h5", gs)

    cfg = rule_config(1, cleaning={"flux_quantiles": [0.0, 1.0], "catalog_ranges": {"mag": [15.0, 30.0]}})
    h5, report_path = outputs(tmp_path)
    report = preprocess(raw, h5, report_path, cfg)

    assert report == json.loads(report_path.read_text())
    assert report["removed"]["nonfinite"] == 1
    assert report["removed"]["catalog_range:mag"] == 1
    assert report["removed"]["edge"] >= 1
    assert report["n_in"] == len(gs)
    assert report["n_out"] == len(gs) - sum(report["removed"].values())
    kept = np.concatenate([read_galaxies(h5[s]).ids for s in SPLITS])
    assert len(kept) == report["n_out"]
    assert not {0, 1, 2} & set(kept.tolist())
    # The edge rule agrees with a direct measurement on the truth stamps.
    keep, removed = clean(load_raw(raw), cfg["preprocess"]["cleaning"])
    assert removed == report["removed"] and keep.sum() == report["n_out"]


def test_split_is_deterministic_and_disjoint(tmp_path, galaxies):
    ids = np.arange(1000)
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    a, b = split_ids(ids, fractions), split_ids(ids, fractions)
    for s in SPLITS:
        np.testing.assert_array_equal(a[s], b[s])
    assert (a["train"].astype(int) + a["val"] + a["test"] == 1).all()
    assert 700 < a["train"].sum() < 900 and 50 < a["val"].sum() < 150
    # A galaxy's split does not depend on the other galaxies.
    sub = split_ids(ids[::7], fractions)
    for s in SPLITS:
        np.testing.assert_array_equal(sub[s], a[s][::7])
    with pytest.raises(PreprocessError, match="preprocess.split"):
        split_ids(ids, {"train": 0.8, "val": 0.3, "test": 0.1})

    raw = write_raw(tmp_path / "raw.h5", galaxies)
    h5, rep = outputs(tmp_path)
    preprocess(raw, h5, rep, rule_config(0))
    parts = {s: read_galaxies(h5[s]) for s in SPLITS}
    sets = [set(parts[s].ids.tolist()) for s in SPLITS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    # Normalisation: one norm_scale (median train noise_sigma) in all files; invertible.
    scale = parts["train"].attrs["norm_scale"]
    assert scale == pytest.approx(float(np.median(parts["train"].noise_sigma)))
    assert all(parts[s].attrs["norm_scale"] == scale and parts[s].attrs["norm_method"] == "scale" for s in SPLITS)
    x = normalize(parts["val"].images, scale)
    assert 0.5 < np.median(np.abs(x[..., :3, :])) / 0.6745 < 2.0  # noise of order 1 in model units
    np.testing.assert_allclose(denormalize(x, scale), parts["val"].images, rtol=1e-6)
    # Pixels are stored in counts, unchanged for the galaxies kept.
    gal = parts["test"].ids[0]
    np.testing.assert_array_equal(parts["test"].images[0], galaxies.images[gal])


def test_everything_removed_names_the_rule(tmp_path, galaxies):
    raw = write_raw(tmp_path / "raw.h5", galaxies)
    h5, rep = outputs(tmp_path)
    with pytest.raises(PreprocessError, match="catalog_range:mag"):
        preprocess(raw, h5, rep, rule_config(0, cleaning={"catalog_ranges": {"mag": [100.0, 101.0]}}))
    assert not any(p.exists() for p in h5.values()) and not rep.exists()
    with pytest.raises(PreprocessError, match="catalog_ranges.no_such_column"):
        preprocess(raw, h5, rep, rule_config(0, cleaning={"catalog_ranges": {"no_such_column": [0.0, 1.0]}}))


def test_bad_raw_file_names_file_and_dataset(tmp_path, galaxies):
    raw = write_raw(tmp_path / "raw.h5", galaxies.subset(np.arange(5)))
    with h5py.File(raw, "a") as f:
        del f["noise_sigma"]
    h5, rep = outputs(tmp_path)
    with pytest.raises(ContractError, match=r"raw\.h5.*'noise_sigma'"):
        preprocess(raw, h5, rep, rule_config(0))
    with h5py.File(raw, "a") as f:
        f["noise_sigma"] = np.ones(3, np.float32)  # wrong shape
    with pytest.raises(ContractError, match=r"raw\.h5.*'noise_sigma' must be \(5,\)"):
        preprocess(raw, h5, rep, rule_config(0))


def second_moment(stack: np.ndarray) -> float:
    img = stack.mean(axis=0)[0].astype(np.float64)
    y, x = np.indices(img.shape) - np.array(img.shape)[:, None, None] // 2
    return float((img * (x**2 + y**2)).sum() / img.sum())


def test_target_psf_becomes_the_stored_psf_and_broadens_images(galaxies):
    gs = galaxies.subset(np.arange(12))
    # profile and beta are the schema's defaults (moffat, 3.5)
    target = load_config(overrides={"preprocess": {"target_psf": {"fwhm_arcsec": 0.2}}})["preprocess"]["target_psf"]
    out = convolve_to_target(gs, target)
    h = gs.images.shape[-1]
    expected = (
        galsim.Moffat(beta=3.5, fwhm=0.2)
        .drawImage(nx=h, ny=h, scale=gs.pixel_scale, method="no_pixel", use_true_center=False)
        .array
    )
    np.testing.assert_allclose(out.psf[0, 0], expected / expected.sum(), atol=1e-6)
    assert np.isclose(out.psf.sum(), 1.0, atol=1e-5)
    assert second_moment(out.images) > second_moment(gs.images) + 5.0  # pixels²
    assert gs.images.mean(axis=0).max() > 1.5 * out.images.mean(axis=0).max()
    # Flux is conserved (up to light beyond the stamp); the truth is untouched.
    np.testing.assert_allclose(out.images.sum(axis=(1, 2, 3)), gs.images.sum(axis=(1, 2, 3)), rtol=0.15)
    np.testing.assert_array_equal(out.truth, gs.truth)
    # Smoothing the noise lowers its per-pixel sigma and correlates it further.
    assert (out.noise_sigma < gs.noise_sigma).all()
    p = out.noise_power[0, 0]
    assert p[0, 0] / p[h // 2, h // 4] > gs.noise_power[0, 0, 0, 0] / gs.noise_power[0, 0, h // 2, h // 4]
    # The predicted sigma agrees with the sigma of convolved pure-noise stamps drawn from noise_power.
    rng = np.random.default_rng(0)
    white = rng.standard_normal((12, 1, h, h))
    noise_only = gs.subset(np.arange(12))
    noise_only.images = np.fft.irfft2(np.fft.rfft2(white) * np.sqrt(gs.noise_power), s=(h, h)).astype(np.float32)
    assert noise_only.images.std() == pytest.approx(float(gs.noise_sigma[0]), rel=0.1)
    measured = convolve_to_target(noise_only, target).images.std()
    assert measured == pytest.approx(float(out.noise_sigma[0]), rel=0.2)


def test_tiny_catalog_is_explained_up_front(tmp_path, galaxies, caplog):
    # 8 galaxies none of which hashes into 'val': said before cleaning, with the count and what the split needs.
    masks = split_ids(galaxies.ids, {"train": 0.8, "val": 0.1, "test": 0.1})
    tiny = galaxies.subset(np.flatnonzero(~masks["val"])[:8])
    raw = write_raw(tmp_path / "tiny.h5", tiny)
    h5, cleaning = outputs(tmp_path)
    with pytest.raises(PreprocessError, match=r"only 8 galaxies \(fewer than 50\).*split 'val' is empty") as err:
        preprocess(raw, h5, cleaning, rule_config(1))
    assert "\n" not in str(err.value) and "0.8/0.1/0.1" in str(err.value)
    # 40 galaxies: it runs, after a one-line warning that the quantile cut drops the extremes
    with caplog.at_level("WARNING", logger="morphoflow.data.preprocess"):
        report = preprocess(write_raw(tmp_path / "raw.h5", galaxies), h5, cleaning, rule_config(1))
    assert report["removed"]["flux"] >= 2
    assert any("only 40 galaxies" in r.getMessage() and "flux_quantiles" in r.getMessage() for r in caplog.records)
