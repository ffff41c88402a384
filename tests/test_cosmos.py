from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.io import fits

from _cosmos_fixture import BAD_FIT, BAD_STAMP, FileServer, make_cosmos_sample, make_cosmos_tarball
from morphoflow.config import load_config
from morphoflow.contract import read_galaxies
from morphoflow.data.cosmos import NoisePowerError, centred_noise, extract_sample, noise_power, read_cosmos, run_cosmos
from morphoflow.data.download import DownloadError, fetch
from morphoflow.data.preprocess import run_preprocess

N = 10
STAMP = 64


def cosmos_section(**overrides) -> dict:
    r"""The validated ``cosmos`` config section with ``overrides`` (the schema fills the rest)."""
    return load_config(overrides={"cosmos": overrides})["cosmos"]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return make_cosmos_tarball(tmp_path_factory.mktemp("cosmos_src"), n=N)


@pytest.fixture(scope="module")
def raw(tarball, tmp_path_factory):
    r"""Download the tarball over HTTP (connection cut once), unpack it and write raw.h5."""
    work = tmp_path_factory.mktemp("cosmos_run")
    with FileServer({"/COSMOS_25.2_training_sample.tar.gz": tarball.read_bytes()}, cut_first=True) as srv:
        local = fetch(
            f"{srv.url}/COSMOS_25.2_training_sample.tar.gz",
            work / "COSMOS_25.2_training_sample.tar.gz",
            backoff=0,
            progress=False,
        )
    assert any(r is not None for _, r in srv.requests)  # resumed with Range
    assert local.read_bytes() == tarball.read_bytes()
    out = work / "raw.h5"
    config = load_config(overrides={"seed": 7, "cosmos": {"stamp_size": STAMP}, "download": {"sample": "25.2"}})
    rule_config = {
        "cosmos": config["cosmos"],
        "seed": config["seed"],
        "download": {k: config["download"][k] for k in ("sample", "known_hash")},
    }
    run_cosmos(tarball=local, raw=out, config=rule_config, threads=2)
    return work, out


def test_contract_file_from_cosmos(raw):
    work, out = raw
    gs = read_galaxies(out)
    root = work / "COSMOS_25.2_training_sample_unpacked" / "COSMOS_25.2_training_sample"
    param = fits.getdata(root / "real_galaxy_catalog_25.2_fits.fits")
    ident = np.asarray(param["IDENT"])
    # GalSim's 'marginal' exclusion removes the failed fit and the low-S/N stamp, nothing else.
    assert len(gs) == N - 2
    assert set(gs.ids) == set(ident) - {ident[BAD_FIT], ident[BAD_STAMP]}
    assert gs.images.shape == (N - 2, 1, STAMP, STAMP)
    assert gs.attrs["source"] == "cosmos" and gs.attrs["band"] == "F814W"
    assert gs.attrs["pixel_scale_arcsec"] == 0.03 and gs.attrs["zeropoint_ab"] == 25.94
    rows = np.searchsorted(ident, gs.ids)
    np.testing.assert_allclose(gs.catalog["mag"], param["mag_auto"][rows])
    np.testing.assert_allclose(gs.catalog["hlr_arcsec"], 0.03 * param["flux_radius"][rows])
    np.testing.assert_allclose(gs.catalog["redshift"], param["zphot"][rows])
    np.testing.assert_allclose(gs.catalog["sersic_n"], param["sersicfit"][rows, 2])
    np.testing.assert_allclose(gs.catalog["q"], param["sersicfit"][rows, 3])
    assert gs.units["mag"] == "mag(AB)" and gs.units["hlr_arcsec"] == "arcsec"


def test_pixels_psf_and_noise_model(raw):
    gs = read_galaxies(raw[1])
    # Flux in the stamp matches mag_auto with the F814W zero point (the stamp truncates a little).
    stamp_mag = gs.attrs["zeropoint_ab"] - 2.5 * np.log10(gs.images.sum(axis=(1, 2, 3)))
    assert np.all(np.abs(stamp_mag - gs.catalog["mag"]) < 0.5)
    # Each galaxy's light is centred in its stamp.
    yy, xx = np.mgrid[:STAMP, :STAMP]
    img = np.clip(gs.images[:, 0], 0, None)
    cy = (img * yy).sum(axis=(1, 2)) / img.sum(axis=(1, 2))
    cx = (img * xx).sum(axis=(1, 2)) / img.sum(axis=(1, 2))
    assert np.all(np.abs(cy - STAMP // 2) < 3) and np.all(np.abs(cx - STAMP // 2) < 3)
    # One PSF per galaxy, unit sum, peak at (H // 2, W // 2).
    assert gs.psf.shape == gs.images.shape
    np.testing.assert_allclose(gs.psf.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    peaks = gs.psf[:, 0].reshape(len(gs), -1).argmax(axis=1)
    assert np.all(peaks == (STAMP // 2) * STAMP + STAMP // 2)
    # Correlated noise: power spectrum averages to the variance (Parseval), is not flat, and
    # the stamp corners (sky only) have about the stated sigma.
    assert gs.noise_power.shape == (len(gs), 1, STAMP, STAMP // 2 + 1)
    p = gs.noise_power[:, 0]
    full_sum = p[..., 0].sum(-1) + p[..., -1].sum(-1) + 2 * p[..., 1:-1].sum(axis=(-1, -2))
    np.testing.assert_allclose(full_sum / STAMP**2, gs.noise_sigma**2, rtol=0.02)
    assert gs.noise_power[0, 0, 0, 0] > 2 * gs.noise_power[0, 0, STAMP // 2, STAMP // 4]
    corners = np.concatenate([gs.images[:, 0, :10, :10].ravel(), gs.images[:, 0, -10:, -10:].ravel()])
    assert 0.6 < corners.std() / gs.noise_sigma.mean() < 1.6


def test_threads_do_not_change_results(raw):
    folder = raw[0] / "COSMOS_25.2_training_sample_unpacked"
    cosmos = cosmos_section(stamp_size=96, exclusion_level="none")
    one = read_cosmos(folder, cosmos, sample="25.2", seed=7, threads=1, progress=False)
    two = read_cosmos(folder, cosmos, sample="25.2", seed=7, threads=2, progress=False)
    assert len(one) == N  # no exclusion
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.catalog["id"], two.catalog["id"])
    other = read_cosmos(folder, cosmos, sample="25.2", seed=8, threads=1, progress=False)
    assert not np.array_equal(one.images, other.images)  # the noise padding follows the seed


def test_size_cut_and_reuse_of_extraction(raw):
    work = raw[0]
    folder = extract_sample(work / "COSMOS_25.2_training_sample.tar.gz")  # reused, not re-extracted
    every = read_cosmos(folder, cosmos_section(stamp_size=16), sample="25.2", seed=42, progress=False)
    cut = read_cosmos(folder, cosmos_section(stamp_size=16, max_hlr_arcsec=0.3), sample="25.2", seed=42, progress=False)
    assert 0 < len(cut) < len(every.catalog["hlr_arcsec"])
    with pytest.raises(FileNotFoundError, match="real_galaxy_catalog_23.5.fits"):
        read_cosmos(folder, cosmos_section(), sample="23.5", seed=42, progress=False)


def test_preprocess_accepts_cosmos_file(raw, tmp_path):
    config = load_config(
        overrides={
            "seed": 7,
            "preprocess": {
                "split": {"train": 0.34, "val": 0.33, "test": 0.33},  # 8 galaxies: 4 / 2 / 2
                "cleaning": {"flux_quantiles": [0.0, 1.0]},
            },
        }
    )
    outs = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
    report = run_preprocess(
        raw=raw[1],
        **outs,
        cleaning=tmp_path / "cleaning.json",
        config={"preprocess": config["preprocess"], "seed": config["seed"]},
    )
    assert report["n_in"] == N - 2 and report["n_out"] == N - 2  # no COSMOS stamp is cut by the edge rule
    parts = [read_galaxies(outs[s]) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == N - 2
    for p in parts:
        assert p.noise_power is not None and p.attrs["norm_scale"] > 0 and p.attrs["source"] == "cosmos"


def test_corrupted_tarball_is_refused_before_extraction(tarball, tmp_path):
    local = tmp_path / tarball.name
    data = bytearray(tarball.read_bytes())
    local.write_bytes(bytes(data))
    extract_sample(local)  # records the checksum on first use
    assert (tmp_path / (tarball.name + ".sha256")).exists()
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    local.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="checksum mismatch"):
        extract_sample(local, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def _off_centre_correlation(folder, shape=(50, 50), peak=(33, 32)):
    r"""Write the COSMOS noise correlation function as an even-sized image with lag 0 at pixel ``peak`` (x, y)."""
    cn = galsim.getCOSMOSNoise()
    h, w = shape
    cf = cn.drawImage(galsim.ImageD(w, h, scale=0.03)).array  # lag 0 at (w // 2, h // 2)
    cf = np.roll(cf, (peak[1] - h // 2, peak[0] - w // 2), axis=(0, 1))
    assert np.unravel_index(cf.argmax(), cf.shape) == (peak[1], peak[0])
    fits.PrimaryHDU(cf).writeto(folder / "acs_I_unrot_sci_20_cf.fits", overwrite=True)
    return cn


def test_even_off_centre_noise_correlation_gives_the_true_power(tmp_path):
    # A 50 x 50 correlation image, lag 0 at (33, 32): GalSim centres it on its true centre, the old
    # FFT gave ~half the modes negative (silently clamped) and a modulated spectrum.
    root = make_cosmos_sample(tmp_path, n=6)
    cn = _off_centre_correlation(root)
    gs = read_cosmos(tmp_path, cosmos_section(stamp_size=STAMP, exclusion_level="none"), sample="25.2", seed=1)
    truth = noise_power(cn, (STAMP, STAMP), 0.03)
    ratio = gs.noise_power[0, 0] / truth
    assert abs(np.median(ratio) - 1) < 0.02
    assert np.all((ratio > 0.7) & (ratio < 1.3))  # the 50 x 50 window truncates the far lags only
    np.testing.assert_allclose(gs.noise_sigma**2, cn.getVariance(), rtol=1e-6)


def test_noise_power_refuses_negative_spectrum():
    # Not a correlation function: strong negative correlation at lag 1 (power 1 - 1.8 (cos kx + cos ky) < 0).
    cf = np.zeros((11, 11))
    cf[5, 5] = 1.0
    cf[5, 4] = cf[5, 6] = cf[4, 5] = cf[6, 5] = -0.9
    noise = centred_noise(galsim.ImageD(cf, scale=0.03), 1.0)
    with pytest.raises(NoisePowerError, match="negative power"):
        noise_power(noise, (32, 32), 0.03)


def test_noise_model_follows_a_coarser_stamp_pixel_scale(raw):
    # Drawn at 0.06"/pixel (twice COSMOS'), pixel values scale with the pixel area: noise σ x 4.
    folder = raw[0] / "COSMOS_25.2_training_sample_unpacked"
    gs = read_cosmos(folder, cosmos_section(stamp_size=48, pixel_scale_arcsec=0.06), sample="25.2", seed=3)
    corners = np.concatenate([gs.images[:, 0, :8, :8].ravel(), gs.images[:, 0, -8:, -8:].ravel()])
    assert 0.8 < corners.std() / gs.noise_sigma.mean() < 1.25
    np.testing.assert_allclose(gs.noise_power.mean(axis=(1, 2, 3)), gs.noise_sigma**2, rtol=0.05)
