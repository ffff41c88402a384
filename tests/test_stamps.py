from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.io import fits
from scipy.stats import spearmanr

from morphoflow.config import load_config
from morphoflow.contract import read_galaxies
from morphoflow.data.stamps import (
    cut_stamps,
    read_fits_image,
    run_cut_stamps,
    write_hubble_deep_field,
)

STAMP = 32
# The HDF settings: the schema's defaults (0.138 arcsec/pixel, zero point 36, 32-pixel stamps) and a saturation cut.
HDF_CONFIG = load_config(overrides={"seed": 3, "stamps": {"stamp_size": STAMP, "saturation": 760}})
RULE_CONFIG = {"stamps": HDF_CONFIG["stamps"], "seed": HDF_CONFIG["seed"]}  # pick("stamps", "seed")


def section(**overrides) -> dict:
    r"""The validated ``stamps`` config section with ``overrides`` (the schema fills the rest)."""
    return load_config(overrides={"stamps": overrides})["stamps"]


@pytest.fixture(scope="module")
def hdf(tmp_path_factory):
    work = tmp_path_factory.mktemp("hdf")
    image = write_hubble_deep_field(work / "hdf.fits")
    out = work / "raw.h5"
    run_cut_stamps(image=image, raw=out, config=RULE_CONFIG)
    return image, out


def test_hdf_stamps(hdf):
    image, out = hdf
    gs = read_galaxies(out)
    h, w = fits.getdata(image).shape
    assert (h, w) == (872, 1000)
    assert len(gs) >= 500  # 762 with these settings
    assert gs.images.shape[1:] == (1, STAMP, STAMP)
    # No stamp is centred near the edge: every stamp lies fully inside the image.
    x, y = gs.catalog["x_pixel"], gs.catalog["y_pixel"]
    assert x.min() >= STAMP // 2 - 0.5 and y.min() >= STAMP // 2 - 0.5
    assert x.max() < w - STAMP // 2 + 0.5 and y.max() < h - STAMP // 2 + 0.5
    # Magnitudes are monotone in the measured flux, and follow the light inside the stamp.
    order = np.argsort(gs.catalog["flux"])
    assert np.all(np.diff(gs.catalog["mag"][order]) < 0)
    central = gs.images[:, 0, STAMP // 2 - 4 : STAMP // 2 + 5, STAMP // 2 - 4 : STAMP // 2 + 5].sum(axis=(1, 2))
    assert spearmanr(central, -gs.catalog["mag"]).statistic > 0.8
    np.testing.assert_array_equal(gs.catalog["hlr_arcsec"], gs.catalog["flux_radius_arcsec"])
    assert np.all(gs.catalog["hlr_arcsec"] >= 1.5 * 0.138)  # the star / artefact size cut
    # Shared analytic PSF, unit sum, centred; noise from the background RMS.
    assert gs.psf.shape == (1, 1, STAMP, STAMP)
    assert abs(gs.psf.sum() - 1) < 1e-5 and gs.psf[0, 0].argmax() == (STAMP // 2) * STAMP + STAMP // 2
    assert 0.1 < gs.attrs["psf_fwhm_arcsec"] < 1.0
    assert np.all(gs.noise_sigma > 0)
    assert gs.attrs["source"] == "stamps" and gs.attrs["zeropoint_ab"] == 36.0
    # The JPEG-processed sky noise is correlated: much more power at low than at high frequency;
    # each stamp's spectrum has the stamp's variance (Parseval).
    p = gs.noise_power[:, 0].astype(np.float64)
    assert p.shape == (len(gs), STAMP, STAMP // 2 + 1)
    assert np.all(p[:, 1, 1] > 5 * p[:, STAMP // 2, STAMP // 4])
    full = (p[..., 0].sum(-1) + p[..., -1].sum(-1) + 2 * p[..., 1:-1].sum(axis=(1, 2))) / STAMP**2
    np.testing.assert_allclose(full, gs.noise_sigma.astype(np.float64) ** 2, rtol=1e-3)


def test_hdf_stamps_are_reproducible(hdf, tmp_path):
    image, out = hdf
    run_cut_stamps(image=image, raw=tmp_path / "again.h5", config=RULE_CONFIG)
    a, b = read_galaxies(out), read_galaxies(tmp_path / "again.h5")
    np.testing.assert_array_equal(a.images, b.images)


def synthetic_field(seed=5):
    r"""A 200 × 200 image at 0.2"/pixel: four Sérsic galaxies, one star, one close pair, white noise."""
    rng = galsim.BaseDeviate(seed)
    psf = galsim.Moffat(beta=3.5, fwhm=0.6)
    img = galsim.ImageF(200, 200, scale=0.2)
    galaxies = [(50, 50, 1e4), (150, 60, 5e3), (60, 150, 2e4), (140, 140, 8e3)]
    for x, y, flux in galaxies:
        g = galsim.Sersic(n=1.5, half_light_radius=0.8, flux=flux).shear(q=0.6, beta=0.5 * galsim.radians)
        galsim.Convolve(g, psf).drawImage(img, add_to_image=True, center=galsim.PositionD(x + 1, y + 1))
    psf.withFlux(2e4).drawImage(img, add_to_image=True, center=galsim.PositionD(101, 101))  # a star
    img.array[:] += 100.0  # sky
    img.addNoise(galsim.GaussianNoise(rng, sigma=5.0))
    return img.array.astype(np.float64), galaxies, psf


def test_synthetic_field_galaxies_found_star_rejected():
    image, galaxies, _psf = synthetic_field()
    stamps = section(
        pixel_scale_arcsec=0.2,
        zeropoint_ab=30.0,
        stamp_size=24,
        min_flux_radius_pixel=2.0,
        max_peak_fraction=0.2,
        psf_fwhm_arcsec=0.6,
        background_box_pixel=50,
    )
    gs = cut_stamps(image, stamps, seed=42)
    found = np.stack([gs.catalog["x_pixel"], gs.catalog["y_pixel"]], axis=1)
    for x, y, _ in galaxies:
        assert np.min(np.hypot(*(found - [x, y]).T)) < 1.0
    assert np.min(np.hypot(*(found - [100, 100]).T)) > 5  # the star is not a galaxy stamp
    assert len(gs) == len(galaxies)
    np.testing.assert_allclose(gs.noise_sigma, 5.0, rtol=0.15)
    # White noise: a flat measured spectrum at about sigma².
    p = gs.noise_power[0, 0]
    assert 0.7 < p[1:, 1:].mean() / 25.0 < 1.3 and p[:4, :4].mean() / p[8:, 4:].mean() < 1.5
    # Kron fluxes recover the input fluxes; magnitudes follow.
    flux_in = np.array([f for x, y, f in galaxies])
    match = [np.argmin(np.hypot(*(found - [x, y]).T)) for x, y, _ in galaxies]
    np.testing.assert_allclose(gs.catalog["flux"][match], flux_in, rtol=0.15)  # Kron: ~90 % of the light
    np.testing.assert_allclose(gs.catalog["mag"][match], 30.0 - 2.5 * np.log10(flux_in), atol=0.18)


def test_neighbours_replaced_by_noise_and_weight_map():
    image, _galaxies, _ = synthetic_field()
    # A bright neighbour 14 pixels from the first galaxy, inside its 32-pixel stamp.
    neighbour = galsim.Convolve(galsim.Exponential(half_light_radius=0.4, flux=3e4), galsim.Gaussian(fwhm=0.6))
    extra = galsim.ImageF(200, 200, scale=0.2)
    neighbour.drawImage(extra, center=galsim.PositionD(64 + 1, 50 + 1))
    extra = extra.array
    weight = np.full(image.shape, 1 / 25.0)
    common = dict(
        pixel_scale_arcsec=0.2, zeropoint_ab=30.0, stamp_size=32, min_flux_radius_pixel=2.0, psf_fwhm_arcsec=0.6
    )
    gs = cut_stamps(image + extra, section(**common, max_neighbour_fraction=0.3), seed=42, weight=weight)
    np.testing.assert_allclose(gs.noise_sigma, 5.0)  # from the weight map
    found = np.stack([gs.catalog["x_pixel"], gs.catalog["y_pixel"]], axis=1)
    i = int(np.argmin(np.hypot(*(found - [50, 50]).T)))
    assert np.hypot(*(found[i] - [50, 50])) < 1.5
    stamp = gs.images[i, 0]
    # The neighbour's core (at stamp x = 16 + 14) holds only noise now, the galaxy's core is intact.
    assert abs(stamp[16, 29:32].mean()) < 4 * 5.0 and stamp[16, 16] > 100
    strict = cut_stamps(image + extra, section(**common, max_neighbour_fraction=0.0), seed=42, weight=weight)
    assert len(strict) < len(gs)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="missing.fits"):
        read_fits_image(tmp_path / "missing.fits")
    fits.PrimaryHDU(np.zeros(5)).writeto(tmp_path / "flat.fits")
    with pytest.raises(ValueError, match="flat.fits: no 2-D image"):
        read_fits_image(tmp_path / "flat.fits")
    # a section that bypassed the schema (which allows moffat and gaussian only)
    stamps = dict(
        section(pixel_scale_arcsec=0.2, zeropoint_ab=30.0, stamp_size=24, psf_fwhm_arcsec=0.6), psf_model="airy"
    )
    with pytest.raises(ValueError, match="stamps.psf_model"):
        cut_stamps(synthetic_field()[0], stamps, seed=42)


@pytest.mark.slow
def test_rules_write_raw_from_hdf(tmp_path):
    r"""Rules hdf_image -> cut_stamps, run by Snakemake with config/hdf.yaml in a scratch folder."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cmd = [
        str(Path(sys.executable).with_name("snakemake")),
        "-s",
        str(repo / "Snakefile"),
        "-d",
        str(tmp_path),
        "--configfile",
        str(repo / "config/config.yaml"),
        str(repo / "config/hdf.yaml"),
        "--cores",
        "1",
        "--quiet",
        "--",
        "results/data/raw.h5",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    gs = read_galaxies(tmp_path / "results/data/raw.h5")
    assert len(gs) >= 500 and gs.attrs["source"] == "stamps"
    assert (tmp_path / "resources/hdf/hubble_deep_field.fits").exists()
    assert "stamps kept" in (tmp_path / "logs/cut_stamps.log").read_text()
    assert (tmp_path / "benchmarks/cut_stamps.tsv").exists()
