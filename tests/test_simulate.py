"""Rule simulate: real GalSim rendering on a few small stamps."""

from __future__ import annotations

from pathlib import Path

import galsim
import numpy as np
import pytest
import torch

from morphoflow.config import load_config
from morphoflow.contract import read_galaxies
from morphoflow.data.simulate import Renderer, draw_catalog_row, run_simulate, simulate
from morphoflow.seeding import item_rng

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def small_config(n: int = 16, **simulate) -> dict:
    return load_config(
        ROOT / "config/config.yaml",
        ROOT / "config/test.yaml",
        overrides={"simulate": {"n_galaxies": n, "chunk_size": 4, **simulate}},
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(small_config()["simulate"])


def test_thread_count_does_not_change_output():
    config = small_config(16)
    one = simulate(config, n_threads=1)
    two = simulate(config, n_threads=2)
    assert one.images.tobytes() == two.images.tobytes()
    assert one.truth.tobytes() == two.truth.tobytes()
    for key in one.catalog:
        np.testing.assert_array_equal(one.catalog[key], two.catalog[key])
    # Different galaxies get different noise and parameters.
    assert not np.array_equal(one.images[0], one.images[1])
    # A different seed gives a different data set.
    other = simulate({**config, "seed": config["seed"] + 1}, n_threads=1)
    assert not np.array_equal(one.catalog["mag"], other.catalog["mag"])


def test_catalog_model_trends():
    cat = small_config()["simulate"]["catalog"]
    rows = [draw_catalog_row(cat, item_rng(0, i, "simulate")) for i in range(4000)]
    mag = np.array([r["mag"] for r in rows])
    hlr = np.array([r["hlr_arcsec"] for r in rows])
    z = np.array([r["redshift"] for r in rows])
    assert mag.min() >= cat["mag_min"] and mag.max() <= cat["mag_max"]
    assert hlr.min() >= cat["hlr_min_arcsec"] - 1e-12 and hlr.max() <= cat["hlr_max_arcsec"] + 1e-12
    assert z.min() >= cat["redshift_min"] and z.max() <= cat["redshift_max"]
    # Brighter -> larger (median), higher redshift -> fainter (median).
    assert np.median(hlr[mag < 21.5]) > 1.3 * np.median(hlr[mag > 23.5])
    assert np.median(mag[z > 1.2]) > np.median(mag[z < 0.5]) + 0.8
    n = np.array([r["sersic_n"] for r in rows])
    assert set(np.unique(n)) <= set(np.arange(1.0, 4.01, 0.5))


def test_truth_convolved_with_psf_matches_noiseless_image(renderer):
    h = renderer.n
    psf_ft = np.fft.rfft2(np.fft.ifftshift(renderer.psf_stamp))
    for i in range(6):
        row = draw_catalog_row(renderer.cfg["catalog"], item_rng(3, i, "simulate"))
        row["flux"] = 10.0
        row["knot_fraction"] = 0.2
        observed, truth = renderer.draw(row, knot_seed=i + 1)
        model = np.fft.irfft2(np.fft.rfft2(truth) * psf_ft, s=(h, h))
        # The stored PSF has unit sum on the stamp while the observed image loses the PSF's far wings
        # (a few per cent at 32 pixels): compare the shapes at matched flux, and the raw residual loosely.
        assert 0.85 < observed.sum() / model.sum() <= 1.0
        shape = np.abs(model * observed.sum() / model.sum() - observed).sum() / np.abs(observed).sum()
        raw = np.abs(model - observed).sum() / np.abs(observed).sum()
        assert shape < 0.03 and raw < 0.15, (i, shape, raw)
        # The truth is PSF-free: sharper than the observed image.
        assert truth.max() > observed.max()
        # Centred at pixel (H // 2, W // 2).
        cy, cx = (np.indices(truth.shape) * truth).sum(axis=(1, 2)) / truth.sum()
        assert abs(cy - h // 2) < 1 and abs(cx - h // 2) < 1


def test_noise_power_matches_galsim_cosmos_noise(renderer):
    h = renderer.n
    noise = galsim.getCOSMOSNoise(rng=galsim.BaseDeviate(7))
    image = galsim.ImageD(h, h, scale=renderer.scale)
    draws = 300
    empirical = np.zeros((h, h // 2 + 1))
    for _ in range(draws):
        image.setZero()
        image.addNoise(noise)
        empirical += np.abs(np.fft.rfft2(image.array)) ** 2 / (h * h)
    empirical /= draws
    predicted = renderer.noise_power[:, : h // 2 + 1]
    # Total variance and the shape of the spectrum (binned to beat the per-mode scatter).
    assert np.isclose(empirical.mean(), predicted.mean(), rtol=0.05)
    assert np.isclose(renderer.noise_sigma**2, noise.getVariance(), rtol=0.05)
    bins = lambda p: p.reshape(4, h // 4, -1)[:, :, : h // 2].reshape(4, h // 4, 4, h // 8).mean(axis=(1, 3))  # noqa: E731
    np.testing.assert_allclose(bins(empirical), bins(predicted), rtol=0.12)
    # Correlated: low frequencies carry more power than high ones.
    assert predicted[0, 0] > 2 * predicted[h // 2, h // 2]
    # Our own noise fields have the same variance.
    fields = np.stack([renderer.noise_field(s) for s in range(1, 200)])
    assert np.isclose(fields.var(), renderer.noise_sigma**2, rtol=0.05)


def test_run_simulate_writes_contract_file(tmp_path):
    config = small_config(6)
    path = tmp_path / "raw.h5"
    run_simulate(raw=path, config=config, threads=1)
    gs = read_galaxies(path)
    n = config["simulate"]["stamp_size"]
    assert gs.images.shape == (6, 1, n, n) and gs.truth.shape == gs.images.shape
    assert gs.psf.shape == (1, 1, n, n) and np.isclose(gs.psf.sum(), 1.0, atol=1e-5)
    assert np.unravel_index(gs.psf[0, 0].argmax(), (n, n)) == (n // 2, n // 2)
    assert gs.noise_power.shape == (1, 1, n, n // 2 + 1)
    assert gs.attrs["source"] == "simulate" and gs.attrs["pixel_scale_arcsec"] == 0.03
    flux = 10 ** (-0.4 * (gs.catalog["mag"] - gs.attrs["zeropoint_ab"]))
    np.testing.assert_allclose(gs.catalog["flux"], flux)
    # Most of the flux lands in the stamp (truth), and the noisy total agrees within the noise.
    assert np.all(gs.truth.sum(axis=(1, 2, 3)) > 0.8 * flux)
    noise_total = gs.noise_sigma * n * 3  # generous: correlated noise on n^2 pixels
    assert np.all(np.abs(gs.images.sum(axis=(1, 2, 3)) - gs.truth.sum(axis=(1, 2, 3))) < 0.1 * flux + noise_total)
    assert set(gs.units) >= {"mag", "hlr_arcsec", "redshift", "flux"} and gs.units["mag"] == "mag(AB)"


def test_knot_setting_keeps_total_flux():
    # the knots take their light from the disk; with n_knots = 0 the disk keeps all of it
    rows = []
    for n_knots in (6, 0):
        config = small_config(n=1, knots={"n_knots": n_knots})
        r = Renderer(config["simulate"])
        row, knot_seed, _ = r.parameters(0, config["seed"])
        row.update(hlr_arcsec=0.05, knot_fraction=0.3)
        rows.append(r.draw(row, knot_seed)[1].sum())
    assert rows[0] == pytest.approx(rows[1], rel=0.01)
