r"""Rule ``fits_stamps`` (``data.source: fits``): a FITS cube of stamps and a catalog table → ``raw.h5``.

How people hold their own stamps: one FITS cube (N, H, W) or (N, C, H, W) in counts, a catalog table
(FITS or CSV/ECSV, read with :class:`astropy.table.Table`), a PSF image (one (H', W') / (C, H', W') for
all galaxies, or one per galaxy (N, H', W') / (N, C, H', W')) and a noise σ, from a catalog column or a
header keyword of the cube. Config section ``fits`` (``morphoflow/schemas/fits.schema.yaml``) names the
files, the catalog columns of ``id`` / ``mag`` / ``hlr_arcsec`` / ``redshift``, and the pixel scale, zero
point and band when the cube's header lacks them.

* Units come from the table: a size column in an angle unit is converted to arcsec, one in ``pix`` is
  multiplied by the pixel scale; a column without unit is taken in the contract's unit (``arcsec``,
  ``mag(AB)``). A magnitude column must be unitless or in ``mag`` / ``mag(AB)``.
* The PSF is cropped or zero-padded about its centre pixel (H' // 2, W' // 2) to the stamp size and
  normalised to unit sum (contract: centre at (H // 2, W // 2)).
* Header look-ups: pixel scale from ``PIXSCALE`` / ``PIXSCAL`` / ``SECPIX`` or the celestial WCS; zero
  point from ``MAGZP`` / ``MAGZPT`` / ``MAGZERO`` / ``ZEROPT`` / ``PHOTZP``; band from ``FILTER`` / ``BAND``.
  A config value wins over the header.
"""

from __future__ import annotations

__all__ = ["FitsSourceError", "fit_psf", "read_fits_stamps", "run_fits_stamps"]

import logging
import os
from collections.abc import Mapping
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from ..contract import GalaxySet, write_galaxies

log = logging.getLogger(__name__)

SCALE_KEYS = ("PIXSCALE", "PIXSCAL", "SECPIX")
ZEROPOINT_KEYS = ("MAGZP", "MAGZPT", "MAGZERO", "ZEROPT", "PHOTZP")
BAND_KEYS = ("FILTER", "BAND")


class FitsSourceError(ValueError):
    r"""The FITS stamps, catalog or PSF cannot make a contract file; the message names the file or config key."""


def _read_array(path: str, hdu: int | str | None) -> tuple[np.ndarray, fits.Header]:
    r"""Data and header of HDU ``hdu`` of ``path`` (``None``: the first HDU holding data)."""

    with fits.open(path) as hdul:
        if hdu is None:
            hdu = next((i for i, h in enumerate(hdul) if h.data is not None and h.is_image), None)
            if hdu is None:
                raise FitsSourceError(f"{path}: no image HDU with data")
        return np.asarray(hdul[hdu].data, dtype=np.float64), hdul[hdu].header.copy()


def _header_value(header: fits.Header, keys: tuple[str, ...]) -> Any:
    return next((header[k] for k in keys if k in header), None)


def _pixel_scale(header: fits.Header, cfg: Mapping[str, Any], path: str) -> float:
    if cfg["pixel_scale_arcsec"] is not None:
        return float(cfg["pixel_scale_arcsec"])
    scale = _header_value(header, SCALE_KEYS)
    if scale is None:
        wcs = WCS(header).celestial
        if wcs.naxis == 2 and wcs.has_celestial:
            scale = float(np.mean(np.abs(wcs.proj_plane_pixel_scales().to_value(u.arcsec))))
    if scale is None:
        raise FitsSourceError(f"{path}: no pixel scale in the header; set config key 'fits.pixel_scale_arcsec'")
    return float(scale)


def _zeropoint(header: fits.Header, cfg: Mapping[str, Any], path: str) -> float:
    zp = cfg["zeropoint_ab"] if cfg["zeropoint_ab"] is not None else _header_value(header, ZEROPOINT_KEYS)
    if zp is None:
        raise FitsSourceError(f"{path}: no zero point in the header; set config key 'fits.zeropoint_ab'")
    return float(zp)


def fit_psf(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    r"""Crop or zero-pad PSF images (..., H', W') about pixel (H' // 2, W' // 2) to (..., H, W); unit sum each."""

    h, w = shape
    out = np.zeros((*psf.shape[:-2], h, w))
    ph, pw = psf.shape[-2:]
    # rows/cols of the PSF that land on the stamp, centre pixel onto centre pixel
    y0, x0 = ph // 2 - h // 2, pw // 2 - w // 2
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + h, ph), min(x0 + w, pw)
    out[..., ys - y0 : ye - y0, xs - x0 : xe - x0] = psf[..., ys:ye, xs:xe]
    total = out.sum(axis=(-2, -1), keepdims=True)
    if not np.all(total > 0):
        raise FitsSourceError("PSF image with non-positive sum on the stamp")
    return out / total


def _column(table: Table, name: str, key: str, scale: float, path: str) -> np.ndarray:
    r"""Catalog column ``name`` for contract column ``key``, converted with the table's unit."""

    if name not in table.colnames:
        raise FitsSourceError(f"{path}: no column '{name}' (config key 'fits.columns.{key}'); has {table.colnames}")
    col = table[name]
    unit = getattr(col, "unit", None)
    values = np.asarray(col, dtype=np.float64)
    if unit is None or key in ("id", "redshift"):
        return values
    if key == "hlr_arcsec":
        if unit == u.pix:
            return values * scale
        return (values * unit).to_value(u.arcsec)
    if key == "mag" and unit in (u.mag, u.ABmag):
        return values
    raise FitsSourceError(f"{path}: column '{name}' has unit '{unit}', not usable as '{key}'")


def _noise_sigma(table: Table, header: fits.Header, cfg: Mapping[str, Any], n: int, path: str) -> np.ndarray:
    col, key = cfg["noise_sigma_column"], cfg["noise_sigma_keyword"]
    if (col is None) == (key is None):
        raise FitsSourceError("set exactly one of config keys 'fits.noise_sigma_column' and 'fits.noise_sigma_keyword'")
    if col is not None:
        if col not in table.colnames:
            raise FitsSourceError(f"{path}: no noise column '{col}' (config key 'fits.noise_sigma_column')")
        return np.asarray(table[col], dtype=np.float64)
    if key not in header:
        raise FitsSourceError(f"{cfg['images']}: no header keyword '{key}' (config key 'fits.noise_sigma_keyword')")
    return np.full(n, float(header[key]))


def _images_and_psf(cfg: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, fits.Header]:
    r"""The cube as (N, C, H, W), the PSF as (1 or N, C, H, W) and the cube's header."""

    images, header = _read_array(cfg["images"], cfg["images_hdu"])
    ndim = images.ndim
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise FitsSourceError(f"{cfg['images']}: stamps must be (N, H, W) or (N, C, H, W), got {images.shape}")
    psf, _ = _read_array(cfg["psf"], cfg["psf_hdu"])
    n, c = images.shape[:2]
    per_galaxy = psf.ndim == ndim  # else one PSF for all galaxies
    if psf.ndim not in (ndim - 1, ndim) or (per_galaxy and len(psf) != n):
        raise FitsSourceError(
            f"{cfg['psf']}: PSF shape {psf.shape} fits neither one PSF nor one per stamp of {ndim}-d stamps"
        )
    psf = psf.reshape((n if per_galaxy else 1, c, *psf.shape[-2:]))
    return images, fit_psf(psf, images.shape[-2:]), header


def read_fits_stamps(cfg: Mapping[str, Any]) -> GalaxySet:
    r"""Read the stamps, catalog and PSF named by the validated ``fits`` config section (module doc)."""

    for key in ("images", "catalog", "psf"):
        if cfg[key] is None:
            raise FitsSourceError(f"data.source 'fits' needs config key 'fits.{key}' (a file path)")
    images, psf, header = _images_and_psf(cfg)
    table = Table.read(cfg["catalog"], **({"hdu": cfg["catalog_hdu"]} if cfg["catalog_hdu"] is not None else {}))
    n, path = len(images), str(cfg["catalog"])
    if len(table) != n:
        raise FitsSourceError(f"{path}: {len(table)} catalog rows for {n} stamps in {cfg['images']}")
    scale = _pixel_scale(header, cfg, str(cfg["images"]))
    columns = dict(cfg["columns"])
    catalog = {
        key: _column(table, name, key, scale, path) for key, name in columns.items() if name is not None and key != "id"
    }
    ids = columns.get("id")
    catalog["id"] = np.asarray(table[ids], np.int64) if ids is not None else np.arange(n, dtype=np.int64)
    band = cfg["band"] if cfg["band"] is not None else _header_value(header, BAND_KEYS)
    return GalaxySet(
        images=images.astype(np.float32),
        psf=psf.astype(np.float32),
        noise_sigma=_noise_sigma(table, header, cfg, n, path).astype(np.float32),
        catalog=catalog,
        attrs={
            "pixel_scale_arcsec": scale,
            "band": str(band) if band is not None else "unknown",
            "zeropoint_ab": _zeropoint(header, cfg, str(cfg["images"])),
            "source": "fits",
        },
    )


def run_fits_stamps(
    *,
    images: str | os.PathLike,
    catalog: str | os.PathLike,
    psf: str | os.PathLike,
    raw: str | os.PathLike,
    config: Mapping[str, Any],
) -> None:
    r"""Rule ``fits_stamps``: the FITS stamps, catalog and PSF → the galaxy file ``raw`` (contract layout).

    Arguments:
        images: The FITS cube of stamps (config ``fits.images``).
        catalog: The catalog table, FITS or CSV/ECSV (config ``fits.catalog``).
        psf: The PSF image(s) (config ``fits.psf``).
        raw: The galaxy file to write (``results/data/raw.h5``).
        config: ``{"fits": ...}`` from the validated config.
    """

    cfg = {**config["fits"], "images": str(images), "catalog": str(catalog), "psf": str(psf)}
    gs = read_fits_stamps(cfg)
    write_galaxies(raw, gs)
    log.info(
        "wrote %d galaxies from %s (%.4g arcsec/pixel, zero point %.3f) to %s",
        len(gs),
        images,
        gs.pixel_scale,
        gs.attrs["zeropoint_ab"],
        raw,
    )
