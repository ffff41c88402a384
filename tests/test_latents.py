from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _galaxies import write_split
from morphoflow.autoencoder import load_autoencoder
from morphoflow.autoencoder.evaluate import footprint_masks, run_evaluate_autoencoder
from morphoflow.autoencoder.latents import LatentSet, read_latents, run_extract_latents
from morphoflow.autoencoder.train import run_train_autoencoder
from morphoflow.config import load_config
from morphoflow.contract import ContractError, read_galaxies

torch.set_num_threads(1)

TINY = {
    "model": "vae",
    "latent_dim": 8,
    "widths": [16, 32],
    "blocks": 1,
    "patch": 2,
    "psf_aware": True,
    "beta": 0.1,
    "train": {"max_epochs": 3, "batch_size": 16, "device": "cpu"},
}


def config(**keys) -> dict:
    r"""The validated config with the tiny autoencoder (``keys`` on top of it) and seed 1."""

    return load_config(overrides={"autoencoder": dict(TINY, **keys), "seed": 1})


def train(paths, folder, **keys) -> None:
    cfg = config(**keys)
    run_train_autoencoder(
        train=paths["train"],
        val=paths["val"],
        model=folder / "model.pt",
        history=folder / "history.csv",
        checkpoints=folder / "ckpt",
        config={"autoencoder": cfg["autoencoder"], "seed": cfg["seed"]},
        progress=False,
    )


def extract(model, galaxies, latents, batch_size: int = 256) -> None:
    run_extract_latents(
        model=model,
        galaxies=galaxies,
        latents=latents,
        config={"autoencoder": {"extract": {"batch_size": batch_size}}},
        progress=False,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage1")
    paths = write_split(tmp / "data", n=32, size=32)
    train(paths, tmp)
    return tmp, paths


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_extract_latents_writes_valid_file(tmp_path, trained, kind):
    tmp, paths = trained
    model_path = tmp / "model.pt"
    if kind == "ae":
        train(paths, tmp_path, model="ae")
        model_path = tmp_path / "model.pt"
    out = tmp_path / "latents" / "test.h5"
    extract(model_path, paths["test"], out, batch_size=5)
    lat = read_latents(out)
    gs = read_galaxies(paths["test"])
    assert isinstance(lat, LatentSet) and lat.name == str(out)
    assert lat.z_mean.shape == (16, 8) and lat.z_mean.dtype == np.float32
    assert np.isfinite(lat.z_mean).all()
    assert (lat.z_logvar is None) == (kind == "ae")
    np.testing.assert_array_equal(lat.catalog["id"], gs.ids)
    np.testing.assert_array_equal(lat.ids, gs.ids)
    for col in ("mag", "hlr_arcsec", "redshift"):
        np.testing.assert_array_equal(lat.catalog[col], gs.catalog[col])
        assert lat.units[col] == gs.units[col]
    assert lat.units["hlr_arcsec"] == "arcsec" and lat.units["mag"] == "mag(AB)"
    assert lat.attrs["latent_dim"] == 8 and lat.attrs["model"] == kind
    assert lat.attrs["pixel_scale_arcsec"] == pytest.approx(0.1) and lat.attrs["norm_scale"] == 1.0
    # the context table of the flow: catalog columns as (N, K) float32; a missing column is named
    ctx = lat.context(["mag", "redshift"])
    assert ctx.shape == (16, 2) and ctx.dtype == np.float32
    np.testing.assert_array_equal(ctx[:, 1], gs.catalog["redshift"].astype(np.float32))
    with pytest.raises(ContractError, match=r"test.h5: dataset 'catalog/sersic' is missing"):
        lat.context(["mag", "sersic"])
    # the latents are the model's posterior means, independent of the batch size
    model, meta = load_autoencoder(model_path)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(gs.images / meta["norm_scale"]))
    np.testing.assert_allclose(lat.z_mean, mu.numpy(), rtol=1e-4, atol=1e-5)


def test_extract_latents_refuses_other_stamp_size(tmp_path, trained):
    tmp, _ = trained
    other = write_split(tmp_path, n=8, size=16)
    with pytest.raises(ContractError, match=r"test.h5.*stamps"):
        extract(tmp / "model.pt", other["test"], tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_evaluate_writes_metrics_and_plots(tmp_path, trained):
    tmp, paths = trained
    m = run_evaluate_autoencoder(
        model=tmp / "model.pt",
        test=paths["test"],
        history=tmp / "history.csv",
        metrics=tmp_path / "metrics.json",
        reconstructions=tmp_path / "rec.png",
        loss=tmp_path / "loss.png",
        config={"autoencoder": {"evaluate": config()["autoencoder"]["evaluate"]}},
    )
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == m
    for key in ("test_chi2_per_pixel", "test_chi2_per_pixel_stamp", "test_mse", "test_ssim"):
        assert np.isfinite(m[key])
    assert m["test_chi2_per_pixel"] > 0.5 and m["test_chi2_per_pixel_stamp"] > 0.5
    # galaxy pixels are harder to fit than the sky: footprint chi2 >= whole-stamp chi2
    assert m["test_chi2_per_pixel"] >= m["test_chi2_per_pixel_stamp"]
    assert -1 <= m["test_ssim"] <= 1 and m["footprint_source"] == "truth"
    assert 5 < m["footprint_pixels_per_galaxy"] < 32 * 32
    for png in ("rec.png", "loss.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_footprint_segmentation_without_truth():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    blob = 8.0 * np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 3.0**2))
    obs = (blob + rng.normal(0, 1, (32, 32)))[None, None]
    mask = footprint_masks(obs, np.ones(1), None, nsigma=2.0)[0, 0]
    assert mask[16, 16] and not mask[0, 0]
    # the footprint follows the blob: it covers its bright core and stays compact
    assert mask[blob > 4].mean() > 0.95 and 20 < mask.sum() < 300
    with_truth = footprint_masks(obs, np.ones(1), blob[None, None], fraction=0.1)[0, 0]
    assert with_truth.sum() == (blob > 0.1).sum()
