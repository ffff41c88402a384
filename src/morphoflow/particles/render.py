r"""Images of star-particle galaxies for stage 1: a light-weighted projection, a GalSim PSF and noise.

Each star shines with :math:`L_i = m_i (\max(\mathrm{age}_i, 0.1\,\mathrm{Gyr}) / 1\,\mathrm{Gyr})^{-0.8}` (a mass-to-light ratio
rising with age as :math:`t^{0.8}`, roughly a simple stellar population in the optical; Bruzual & Charlot
2003). The aligned galaxy is seen at inclination ``inclination_deg`` (rotation about the x axis) and its
light deposited on a pixel grid of ``kpc_per_pixel`` centred on pixel (H // 2, W // 2): that histogram,
scaled to counts, is the PSF-free ``truth``. The observed stamp is ``truth`` convolved with a Moffat PSF
(β = 3, ``psf_fwhm_arcsec``) drawn by GalSim, plus GalSim Gaussian noise of ``noise_sigma`` counts.
The total flux follows ``mag = mag_ref - 2.5 log10(L / 1e10)`` (AB), counts ``10^(-0.4 (mag - zeropoint_ab))``.
"""

from __future__ import annotations

__all__ = ["light_weights", "project", "render_galaxy", "render_stars"]

from collections.abc import Mapping
from typing import Any

import galsim
import numpy as np
from scipy.signal import fftconvolve
from tqdm import tqdm

from ..contract import GalaxySet
from ..seeding import item_seed
from .io import StarSet


def light_weights(stars: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
    r"""Luminosity of each star in units of Msun at 1 Gyr: :math:`m (\mathrm{age} / \mathrm{Gyr})^{-0.8}`."""
    return stars[:, columns.index("mass")] * np.maximum(stars[:, columns.index("age")], 0.1) ** -0.8


def project(stars: np.ndarray, columns: tuple[str, ...], inclination_deg: float) -> np.ndarray:
    r"""Sky-plane coordinates (kpc), (N, 2) = (x, y cos i - z sin i)."""
    ix = columns.index("x")
    i = np.deg2rad(inclination_deg)
    x, y, z = stars[:, ix], stars[:, ix + 1], stars[:, ix + 2]
    return np.stack([x, y * np.cos(i) - z * np.sin(i)], 1)


def _psf(cfg: Mapping[str, Any]) -> np.ndarray:
    n = int(cfg["stamp_size"])
    psf = galsim.Moffat(beta=3.0, fwhm=float(cfg["psf_fwhm_arcsec"]))
    # No pixel convolution: the particle histogram already integrates over pixels. Centred on pixel
    # (n // 2, n // 2) as the data contract asks (use_true_center=False).
    img = psf.drawImage(
        nx=n, ny=n, scale=float(cfg["pixel_scale_arcsec"]), method="no_pixel", use_true_center=False
    ).array
    return (img / img.sum()).astype(np.float64)


def render_galaxy(
    stars: np.ndarray, columns: tuple[str, ...], cfg: Mapping[str, Any], psf: np.ndarray, noise_seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    r"""Render one galaxy: returns (observed, truth) (H, W) in counts and catalog values (mag, flux, hlr_arcsec)."""

    n = int(cfg["stamp_size"])
    scale = float(cfg["kpc_per_pixel"])
    xy = project(stars, columns, float(cfg["inclination_deg"])) / scale
    lum = light_weights(stars, columns)
    edges = np.arange(n + 1) - 0.5 - n // 2
    hist, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=[edges, edges], weights=lum)
    mag = float(cfg["mag_ref"]) - 2.5 * np.log10(lum.sum() / 1e10)
    flux = 10 ** (-0.4 * (mag - float(cfg["zeropoint_ab"])))
    truth = hist * (flux / lum.sum())
    full = fftconvolve(truth, psf, mode="full")
    c = n // 2
    conv = full[c : c + n, c : c + n]
    img = galsim.Image(np.ascontiguousarray(conv, dtype=np.float64), scale=float(cfg["pixel_scale_arcsec"]))
    img.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(noise_seed % 2**31), sigma=float(cfg["noise_sigma"])))
    # Light-weighted projected half-light radius (circular), kpc -> arcsec.
    r = np.hypot(xy[:, 0], xy[:, 1]) * scale
    order = np.argsort(r)
    cum = np.cumsum(lum[order])
    hlr_kpc = float(r[order][np.searchsorted(cum, 0.5 * cum[-1])])
    hlr_arcsec = hlr_kpc / scale * float(cfg["pixel_scale_arcsec"])
    return img.array.astype(np.float32), truth.astype(np.float32), {"mag": mag, "flux": flux, "hlr_arcsec": hlr_arcsec}


def render_stars(ss: StarSet, seed: int, cfg: Mapping[str, Any]) -> GalaxySet:
    r"""Render every galaxy of a (cleaned, aligned) :class:`StarSet` into the image data contract.

    The catalog carries the star set's columns (ids, global parameters, truths) plus ``mag``, ``flux``,
    ``hlr_arcsec``; noise is seeded per galaxy by ``item_seed(seed, id, "particles.render")``.

    Arguments:
        cfg: The ``particles.render`` config section.
    """

    n = int(cfg["stamp_size"])
    psf = _psf(cfg)
    images = np.empty((len(ss), 1, n, n), np.float32)
    truth = np.empty_like(images)
    extra: dict[str, list[float]] = {"mag": [], "flux": [], "hlr_arcsec": []}
    for g in tqdm(range(len(ss)), desc="render particles", unit="galaxy", leave=False):
        gid = int(ss.ids[g])
        obs, tru, cat = render_galaxy(ss.galaxy(g), ss.columns, cfg, psf, item_seed(seed, gid, "particles.render"))
        images[g, 0], truth[g, 0] = obs, tru
        for k, v in cat.items():
            extra[k].append(v)
    catalog = dict(ss.catalog)
    units = dict(ss.units)
    for k, v in extra.items():
        catalog[k] = np.asarray(v, np.float64)
    units.update({"mag": "mag(AB)", "flux": "counts", "hlr_arcsec": "arcsec"})
    attrs = {
        "pixel_scale_arcsec": float(cfg["pixel_scale_arcsec"]),
        "band": str(cfg["band"]),
        "zeropoint_ab": float(cfg["zeropoint_ab"]),
        "source": "particles",
        "kpc_per_pixel": float(cfg["kpc_per_pixel"]),
        "inclination_deg": float(cfg["inclination_deg"]),
    }
    return GalaxySet(
        images=images,
        psf=psf[None, None].astype(np.float32),
        noise_sigma=np.full(len(ss), float(cfg["noise_sigma"]), np.float32),
        catalog=catalog,
        attrs=attrs,
        units=units,
        truth=truth,
    )
