"""PSF matching (preprocess.target_psf) makes data the model can learn: resampling, guard rails, likelihood."""

from __future__ import annotations

import json
from pathlib import Path

import galsim
import numpy as np
import pandas as pd
import pytest
import torch

from _galaxies import make_galaxies
from morphoflow.autoencoder.evaluate import run_evaluate_autoencoder
from morphoflow.autoencoder.forward import (
    POWER_FLOOR,
    chi2_fourier,
    chi2_pixel,
    fft_convolve,
    informative_modes,
    rfft_weights,
)
from morphoflow.autoencoder.train import run_train_autoencoder
from morphoflow.config import load_config
from morphoflow.contract import GalaxySet, read_galaxies, write_galaxies
from morphoflow.data.preprocess import PreprocessError, convolve_to_target, run_preprocess

torch.set_num_threads(1)
SCALE = 0.2  # arcsec per pixel, ground-based
SPLITS = ("train", "val", "test")


def target(**keys) -> dict:
    r"""A validated ``preprocess.target_psf`` section."""

    return load_config(overrides={"preprocess": {"target_psf": keys}})["preprocess"]["target_psf"]


def ground_based(n: int, size: int = 32, seed: int = 0, sigma: float = 1.0) -> GalaxySet:
    r"""``n`` Sérsic galaxies under per-galaxy Moffat PSFs (FWHM 0.6-0.8 arcsec) at 0.2 arcsec/pixel, white noise."""

    rng = np.random.default_rng(seed)
    images, truth, psfs = [], [], []
    cat = {k: [] for k in ("id", "mag", "hlr_arcsec", "redshift")}
    for i in range(n):
        psf = galsim.Moffat(beta=3.5, fwhm=float(rng.uniform(0.6, 0.8)))
        flux, hlr = float(rng.uniform(200, 1500)), float(rng.uniform(0.3, 0.8))
        gal = galsim.Sersic(n=float(rng.choice([1.0, 2.5])), half_light_radius=hlr, flux=flux).shear(
            q=float(rng.uniform(0.4, 1.0)), beta=rng.uniform(0, np.pi) * galsim.radians
        )
        draw = dict(nx=size, ny=size, scale=SCALE, use_true_center=False)
        p = psf.drawImage(method="no_pixel", **draw).array
        psfs.append(p / p.sum())
        truth.append(gal.drawImage(**draw).array)
        images.append(galsim.Convolve(gal, psf).drawImage(**draw).array + rng.normal(0, sigma, (size, size)))
        cat["id"].append(i)
        cat["mag"].append(25.0 - 2.5 * np.log10(flux))
        cat["hlr_arcsec"].append(hlr)
        cat["redshift"].append(float(rng.uniform(0.1, 1.5)))
    return GalaxySet(
        images=np.asarray(images, np.float32)[:, None],
        psf=np.asarray(psfs, np.float32)[:, None],
        noise_sigma=np.full(n, sigma, np.float32),
        catalog={k: np.asarray(v, np.int64 if k == "id" else np.float64) for k, v in cat.items()},
        attrs={"pixel_scale_arcsec": SCALE, "band": "r", "zeropoint_ab": 25.0, "source": "simulate"},
        truth=np.asarray(truth, np.float32)[:, None],
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"fwhm_arcsec": 0.9, "stamp_size": 12}, r"more than a quarter of the output stamp"),
        ({"fwhm_arcsec": 0.2}, r"not broader than the data's PSF \(FWHM up to 0.25"),
    ],
)
def test_refused_targets_give_one_line_errors_naming_the_key(keys, message):
    gs = make_galaxies(2, 32, psf_kind="moffat")  # PSF FWHM 0.25 arcsec at 0.1 arcsec/pixel
    with pytest.raises(PreprocessError, match=message) as err:
        convolve_to_target(gs, target(**keys))
    text = str(err.value)
    assert text.startswith("config key 'preprocess.target_psf.fwhm_arcsec': ") and "\n" not in text


def test_resampled_stamps_keep_flux_and_the_noise_model():
    gs = make_galaxies(8, 32, seed=3, sigma=0.5)  # 0.1 arcsec/pixel, 3.2 arcsec field
    out = convolve_to_target(gs, target(fwhm_arcsec=0.6, pixel_scale_arcsec=0.25, stamp_size=24), seed=1)
    assert out.images.shape == out.truth.shape == (8, 1, 24, 24) and out.psf.shape == (1, 1, 24, 24)
    assert out.pixel_scale == 0.25 and out.noise_power.shape == (
        8,
        1,
        24,
        13,
    )  # white data noise: one spectrum per galaxy
    # flux is conserved by the resampling; truth ⊛ psf is the noiseless observed stamp on the new grid
    np.testing.assert_allclose(out.truth.sum(axis=(1, 2, 3)), gs.truth.sum(axis=(1, 2, 3)), rtol=0.02)
    np.testing.assert_allclose(out.images.sum(axis=(1, 2, 3)), gs.images.sum(axis=(1, 2, 3)), rtol=0.15, atol=25)
    noiseless = convolve_to_target(
        _noiseless(gs),
        target(fwhm_arcsec=0.6, pixel_scale_arcsec=0.25, stamp_size=24),
    )
    model = np.fft.irfft2(np.fft.rfft2(out.truth[:, 0]) * np.fft.rfft2(np.fft.ifftshift(out.psf[0, 0])), s=(24, 24))
    peak = noiseless.images.max()
    assert np.abs(model - noiseless.images[:, 0]).max() < 0.05 * peak
    # the stored spectrum predicts the pixel std of matched pure-noise stamps (padding noise included: stationary)
    noise = _noiseless(gs)
    noise.images = np.random.default_rng(0).normal(0.0, 0.5, gs.images.shape).astype(np.float32)
    noise.noise_sigma = gs.noise_sigma
    resid = convolve_to_target(noise, target(fwhm_arcsec=0.6, pixel_scale_arcsec=0.25, stamp_size=24)).images[:, 0]
    assert resid.std() == pytest.approx(float(out.noise_sigma[0]), rel=0.15)
    assert resid[:, :4].std() == pytest.approx(resid[:, 10:14].std(), rel=0.3)  # edge (padding) vs centre
    # added white noise lands in the images, noise_power and noise_sigma
    noisy = convolve_to_target(
        gs, target(fwhm_arcsec=0.6, pixel_scale_arcsec=0.25, stamp_size=24, target_noise_sigma=2.0), seed=1
    )
    assert noisy.noise_sigma[0] == pytest.approx(np.hypot(2.0, out.noise_sigma[0]), rel=1e-5)
    np.testing.assert_allclose(noisy.noise_power, out.noise_power + 4.0, rtol=1e-5)
    assert (noisy.images - out.images).std() == pytest.approx(2.0, rel=0.1)


def _noiseless(gs: GalaxySet) -> GalaxySet:
    r"""``gs`` with its images replaced by the noiseless observed stamps (no noise to pad with)."""

    psf = torch.from_numpy(gs.psf.astype(np.float64))
    obs = fft_convolve(torch.from_numpy(gs.truth.astype(np.float64)), psf).numpy()
    return GalaxySet(
        images=obs.astype(np.float32),
        psf=gs.psf,
        noise_sigma=np.full(len(gs), 1e-6, np.float32),
        catalog=gs.catalog,
        attrs=gs.attrs,
        truth=gs.truth,
    )


def test_fourier_chi2_leaves_out_modes_without_noise_power():
    torch.manual_seed(0)
    r = torch.randn(3, 1, 16, 16)
    white = torch.full((1, 1, 16, 9), 2.0)
    assert informative_modes(white).all()
    torch.testing.assert_close(chi2_fourier(r, white), chi2_pixel(r, torch.full((3,), 2.0**0.5)))
    # a band-limited spectrum (matched to a broad PSF): high frequencies at 1e-15 of the peak carry no weight
    ky = torch.fft.fftfreq(16)[:, None]
    kx = torch.fft.rfftfreq(16)[None, :]
    power = torch.exp(-((ky**2 + kx**2) / 0.005))[None, None].clamp_min(1e-15)
    keep = informative_modes(power)
    assert 0 < keep.float().mean() < 0.5 and bool((power[keep] > POWER_FLOOR * power.max()).all())
    chi2 = chi2_fourier(r, power)
    # the χ² is the sum over the kept modes alone; dividing by every mode would be ~1e15 times larger
    terms = torch.fft.rfft2(r).abs().square() * rfft_weights(16, 16) / (16 * 16 * power)
    torch.testing.assert_close(chi2, (terms * keep).flatten(1).sum(1))
    assert bool((terms.flatten(1).sum(1) > 1e8 * chi2).all())


def _contract_run(tmp: Path, raw: Path, target_psf: dict | None) -> tuple[pd.DataFrame, dict]:
    r"""preprocess -> train_autoencoder (tiny VAE, 6 epochs) -> evaluate_autoencoder on ``raw``; history, figures."""

    cfg = load_config(
        overrides={
            "seed": 3,
            "preprocess": {
                "target_psf": target_psf,
                "tfrecord": False,
                "split": {"train": 0.8, "val": 0.1, "test": 0.1},
            },
            "autoencoder": {
                "latent_dim": 8,
                "widths": [16, 32],
                "patch": 2,
                "train": {"max_epochs": 6, "batch_size": 16, "lr": 3e-3, "warmup_steps": 10, "device": "cpu"},
                "detail": {"enabled": False},
                "evaluate": {"n_plot": 2},
            },
        }
    )
    split = {s: tmp / f"{s}.h5" for s in SPLITS}
    run_preprocess(raw=raw, **split, cleaning=tmp / "cleaning.json", config=cfg)
    run_train_autoencoder(
        train=split["train"],
        val=split["val"],
        model=tmp / "model.pt",
        history=tmp / "history.csv",
        checkpoints=tmp / "ckpt",
        config=cfg,
        progress=False,
    )
    figures = run_evaluate_autoencoder(
        model=tmp / "model.pt",
        test=split["test"],
        history=tmp / "history.csv",
        metrics=tmp / "metrics.json",
        reconstructions=tmp / "rec.png",
        loss=tmp / "loss.png",
        config=cfg,
    )
    return pd.read_csv(tmp / "history.csv"), figures


def test_ground_based_contract_file_matched_to_a_broader_moffat_trains(tmp_path):
    raw = tmp_path / "raw.h5"
    write_galaxies(raw, ground_based(240))
    (tmp_path / "plain").mkdir()
    (tmp_path / "matched").mkdir()
    plain, _ = _contract_run(tmp_path / "plain", raw, None)
    matched, figures = _contract_run(tmp_path / "matched", raw, {"fwhm_arcsec": 1.0, "target_noise_sigma": 1.0})
    test = read_galaxies(tmp_path / "matched" / "test.h5")
    assert json.loads(test.attrs["target_psf"])["fwhm_arcsec"] == 1.0 and test.noise_power is not None
    # before the informative-mode likelihood the matched loss was ~1e4 nats per pixel
    assert matched["val_loss"].iloc[0] < 5.0
    assert matched["train_loss"].iloc[-1] < 3 * plain["train_loss"].iloc[-1]
    assert figures["test_chi2_per_pixel"] <= 1.5
