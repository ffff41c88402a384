r"""Rule ``realgalaxy`` (``data.source: realgalaxy``): any GalSim ``RealGalaxyCatalog`` → ``raw.h5``.

A real-galaxy catalog (catalog FITS table + galaxy image files + PSF image files + optional noise
correlation images, any survey) is read with :class:`galsim.RealGalaxyCatalog` alone, without the
``_fits`` parametric-fit catalog that :class:`galsim.COSMOSCatalog` requires. Each galaxy is drawn as in
:mod:`morphoflow.data.cosmos`: the :class:`galsim.RealGalaxy` (padded with its own correlated noise)
convolved with its original PSF, drawn ``no_pixel`` on a fixed stamp, with the PSF image, noise σ and
noise power spectrum (lag 0 of the correlation image placed explicitly, :func:`~morphoflow.data.cosmos.centred_noise`).
Drawn at a pixel scale :math:`s` other than the catalog's :math:`s_0`, pixel values (noise included) scale
with the pixel area, so σ² and the noise power are multiplied by :math:`(s/s_0)^4`.

Catalog columns: ``mag`` from the catalog's own magnitude column (config ``realgalaxy.columns.mag``,
GalSim's ``MAG``), ``hlr_arcsec`` and ``redshift`` from the named columns; a size column set to null is
measured on the drawn stamp (HSM adaptive moments, Gaussian-equivalent half-light radius
:math:`\sqrt{2\ln 2}\,\sigma`, PSF included). The zero point is config ``realgalaxy.zeropoint_ab``, the
AB magnitude of one count in the catalog's images.
"""

from __future__ import annotations

__all__ = ["RealGalaxyError", "read_realgalaxy", "run_realgalaxy"]

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from astropy.io import fits

from ..contract import GalaxySet, write_galaxies
from ..seeding import item_seed
from .cosmos import centred_noise, noise_power

log = logging.getLogger(__name__)


class RealGalaxyError(ValueError):
    r"""The real-galaxy catalog or the ``realgalaxy`` config cannot make a contract file; names file or key."""


def _open(cfg: Mapping[str, Any]) -> galsim.RealGalaxyCatalog:
    path = cfg["catalog"]
    if path is None:
        raise RealGalaxyError("data.source 'realgalaxy' needs config key 'realgalaxy.catalog' (a file path)")
    if cfg["zeropoint_ab"] is None:
        raise RealGalaxyError("data.source 'realgalaxy' needs config key 'realgalaxy.zeropoint_ab'")
    image_dir = cfg["image_dir"] if cfg["image_dir"] is not None else str(Path(path).parent)
    try:
        return galsim.RealGalaxyCatalog(str(path), dir=image_dir)
    except (OSError, KeyError, galsim.GalSimError) as err:
        raise RealGalaxyError(f"{path}: not a readable GalSim RealGalaxyCatalog ({err})") from err


def _draw(rgc: galsim.RealGalaxyCatalog, i: int, cfg: Mapping[str, Any], scale: float, seed: int) -> dict[str, Any]:
    r"""Galaxy ``i`` on the stamp: image, PSF (unit sum), noise power, variance."""

    size = int(cfg["stamp_size"])
    ident = int(rgc.ident[i]) if str(rgc.ident[i]).lstrip("-").isdigit() else i
    rng = galsim.BaseDeviate(item_seed(seed, ident, "realgalaxy-pad") % (2**31 - 1) + 1)
    gal = galsim.RealGalaxy(rgc, index=i, noise_pad_size=size * scale * np.sqrt(2.0), rng=rng)
    psf = gal.original_psf
    opts = dict(nx=size, ny=size, scale=scale, method="no_pixel", use_true_center=False)
    image = galsim.Convolve(gal, psf).drawImage(**opts).array
    psf_image = psf.drawImage(**opts).array
    correlation, native, variance = rgc.getNoiseProperties(i)
    # no_pixel samples surface brightness: pixel values, noise included, scale with the pixel area
    gain = (scale / float(native)) ** 4
    return {
        "id": ident,
        "image": image,
        "psf": psf_image / psf_image.sum(),
        "noise_power": gain * noise_power(centred_noise(correlation, variance), (size, size), scale),
        "variance": gain * float(variance),
    }


def _hsm_hlr(image: np.ndarray, scale: float) -> float:
    r"""Gaussian-equivalent half-light radius (arcsec) from HSM adaptive moments; NaN if HSM fails."""

    res = galsim.hsm.FindAdaptiveMom(galsim.ImageD(image, scale=scale), strict=False)
    return float(res.moments_sigma * scale * np.sqrt(2 * np.log(2))) if res.moments_status == 0 else np.nan


def _columns(path: str, cfg: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    table = fits.getdata(path, 1)
    out = {}
    for key, name in cfg["columns"].items():
        if name is None:
            continue
        if name not in table.columns.names:
            raise RealGalaxyError(f"{path}: no column '{name}' (config key 'realgalaxy.columns.{key}')")
        out[key] = np.asarray(table[name], np.float64)[:n]
    return out


def read_realgalaxy(cfg: Mapping[str, Any], *, seed: int) -> GalaxySet:
    r"""Read the real-galaxy catalog named by the validated ``realgalaxy`` config section (module doc)."""

    rgc = _open(cfg)
    n = rgc.nobjects if cfg["max_galaxies"] is None else min(rgc.nobjects, int(cfg["max_galaxies"]))
    scale = float(cfg["pixel_scale_arcsec"]) if cfg["pixel_scale_arcsec"] is not None else float(rgc.pixel_scale[0])
    drawn = [_draw(rgc, i, cfg, scale, seed) for i in range(n)]
    catalog = _columns(str(cfg["catalog"]), cfg, n)
    catalog["id"] = np.array([d["id"] for d in drawn], np.int64)
    if "hlr_arcsec" not in catalog:
        catalog["hlr_arcsec"] = np.array([_hsm_hlr(d["image"], scale) for d in drawn])
    log.info(
        "%s: %d galaxies drawn on %d-pixel stamps at %.4g arcsec/pixel", cfg["catalog"], n, cfg["stamp_size"], scale
    )
    stack = lambda key: np.stack([d[key] for d in drawn])[:, None].astype(np.float32)  # noqa: E731
    return GalaxySet(
        images=stack("image"),
        psf=stack("psf"),
        noise_sigma=np.sqrt([d["variance"] for d in drawn]).astype(np.float32),
        noise_power=stack("noise_power"),
        catalog=catalog,
        attrs={
            "pixel_scale_arcsec": scale,
            "band": str(cfg["band"]),
            "zeropoint_ab": float(cfg["zeropoint_ab"]),
            "source": "realgalaxy",
        },
    )


def run_realgalaxy(*, catalog: str | os.PathLike, raw: str | os.PathLike, config: Mapping[str, Any]) -> None:
    r"""Rule ``realgalaxy``: draw every galaxy of a GalSim real-galaxy catalog into ``raw`` (contract layout).

    Arguments:
        catalog: The real-galaxy catalog FITS file (config ``realgalaxy.catalog``).
        raw: The galaxy file to write (``results/data/raw.h5``).
        config: ``{"realgalaxy": ..., "seed": ...}`` from the validated config.
    """

    gs = read_realgalaxy({**config["realgalaxy"], "catalog": str(catalog)}, seed=int(config["seed"]))
    write_galaxies(raw, gs)
    log.info("wrote %d real galaxies to %s", len(gs), raw)
