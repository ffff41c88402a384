r"""Galaxy stamps cut from a survey image (FITS) with SEP (Barbary 2016; Bertin & Arnouts 1996).

Steps of :func:`cut_stamps`:

1. background and its RMS with :class:`sep.Background` (or the RMS from a weight map, 1/sqrt(w));
2. detection and deblending with :func:`sep.extract` (segmentation map kept);
3. photometry: Kron ("AUTO") flux in counts and half-light radius (``sep.flux_radius``) in pixels;
4. rejections: flagged or non-positive flux, stars (half-light radius below ``min_flux_radius_pixel``
   or peak / flux above ``max_peak_fraction``: point-like), saturated sources (peak above
   ``saturation``), sources whose stamp would cross the image edge, and sources whose stamp is
   covered by other sources' segments above ``max_neighbour_fraction``;
5. stamps of ``stamp_size`` pixels centred on the source's pixel (centre at (H // 2, W // 2)), the
   local background subtracted, neighbours' segment pixels replaced by Gaussian noise of the local
   RMS (seeded per source, :func:`morphoflow.seeding.item_rng`);
6. PSF: a given PSF image (cropped/padded to the stamp, unit sum) or a Moffat / Gaussian of FWHM
   ``psf_fwhm_arcsec`` drawn by GalSim (pixel-convolved); a FWHM of ``None`` is estimated as twice
   the 5th percentile of the detected half-light radii (point sources have r½ = FWHM / 2 for a Gaussian);
7. noise: ``noise_sigma`` = median background RMS in the stamp; ``noise_power`` (correlated noise, e.g.
   JPEG-processed or resampled images) = mean :math:`|\mathrm{rfft2}|^2/(HW)` of up to ``noise_patches``
   source-free windows, normalised to unit variance and scaled by each stamp's ``noise_sigma²``.

The catalog has ``mag`` = zeropoint − 2.5 log10(flux), ``flux`` (counts), ``flux_radius_arcsec`` and
``hlr_arcsec`` (the same half-light radius), ``q`` (b/a), ``beta_rad``, ``x_pixel``, ``y_pixel`` (0-based).
No redshift is available: flows on these data condition on ``[mag, hlr_arcsec]``.
"""

from __future__ import annotations

__all__ = [
    "HDF_PIXEL_SCALE",
    "rgb_to_band",
    "write_hubble_deep_field",
    "read_fits_image",
    "gaussian_or_moffat_psf",
    "sky_noise_power",
    "cut_stamps",
    "run_hdf_image",
    "run_cut_stamps",
]

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import galsim
import numpy as np
import sep
from astropy.io import fits

from ..atomic import atomic_path
from ..contract import GalaxySet, write_galaxies
from ..seeding import item_rng

log = logging.getLogger(__name__)

#: Nominal pixel scale of scikit-image's ``hubble_deep_field()`` (arcsec/pixel): the XDF field,
#: about 2.3' × 2.0', spans the 1000 × 872 pixel press image. An estimate, not a calibration.
HDF_PIXEL_SCALE = 0.138


def rgb_to_band(rgb: np.ndarray) -> np.ndarray:
    r"""Sum the channels of an (H, W, 3) 8-bit colour image into one float64 band (0–765 "counts")."""

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) colour image, got shape {rgb.shape}")
    return rgb[..., :3].astype(np.float64).sum(axis=2)


def write_hubble_deep_field(path: str | os.PathLike, *, pixel_scale: float = HDF_PIXEL_SCALE) -> Path:
    r"""Write scikit-image's ``hubble_deep_field()`` as a single-band FITS image (sum of R, G, B).

    The image is flipped vertically so that FITS row 0 is the bottom of the picture. Header keys:
    ``PIXSCALE`` (arcsec/pixel, nominal), ``ORIGIN``, ``BUNIT``.
    """

    from skimage import data

    band = rgb_to_band(data.hubble_deep_field())[::-1].astype(np.float32)
    hdu = fits.PrimaryHDU(band)
    hdu.header["PIXSCALE"] = (pixel_scale, "arcsec/pixel, nominal (press image)")
    hdu.header["BUNIT"] = ("ADU", "sum of the 8-bit R, G, B channels")
    hdu.header["ORIGIN"] = "skimage.data.hubble_deep_field (HubbleSite 2012-37a, XDF)"
    with atomic_path(path) as tmp:
        hdu.writeto(tmp, output_verify="exception")
    return Path(path)


def read_fits_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    r"""Read the first 2-D image HDU of a FITS file as float64; clear error naming the file otherwise."""

    try:
        with fits.open(path) as hdul:
            for hdu in hdul:
                if hdu.data is not None and hdu.data.ndim == 2:
                    return np.asarray(hdu.data, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the {what} FITS file ({err})") from err
    raise ValueError(f"{path}: no 2-D image HDU in the {what} FITS file")


def gaussian_or_moffat_psf(size: int, pixel_scale: float, fwhm_arcsec: float, model: str = "moffat",
                           beta: float = 3.5) -> np.ndarray:
    r"""A (size, size) pixel-convolved PSF image (unit sum, centre at (size // 2, size // 2))."""

    if model == "moffat":
        prof = galsim.Moffat(beta=beta, fwhm=fwhm_arcsec)
    elif model == "gaussian":
        prof = galsim.Gaussian(fwhm=fwhm_arcsec)
    else:
        raise ValueError(f"config key 'stamps.psf_model': unknown PSF model '{model}' (moffat or gaussian)")
    im = prof.drawImage(nx=size, ny=size, scale=pixel_scale, use_true_center=False).array
    return im / im.sum()


def _fit_psf_image(psf: np.ndarray, size: int) -> np.ndarray:
    r"""Crop or zero-pad a PSF image around its peak to (size, size), centre at size // 2, unit sum."""

    psf = np.asarray(psf, dtype=np.float64)
    cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
    out = np.zeros((size, size))
    h = size // 2
    for oy in range(size):
        y = cy - h + oy
        if 0 <= y < psf.shape[0]:
            x0, x1 = cx - h, cx - h + size
            xs = slice(max(x0, 0), min(x1, psf.shape[1]))
            out[oy, xs.start - x0: xs.stop - x0] = psf[y, xs]
    if out.sum() <= 0:
        raise ValueError("the PSF image has no positive flux")
    return out / out.sum()


def sky_noise_power(
    sub: np.ndarray,
    occupied: np.ndarray,
    stamp_size: int,
    rng: np.random.Generator,
    n_patches: int = 256,
) -> tuple[np.ndarray, int]:
    r"""Mean noise power spectrum :math:`E|\mathrm{rfft2}(n)|^2 / (HW)` (counts²) of source-free windows.

    Arguments:
        sub: Background-subtracted image (counts).
        occupied: Pixels that belong to (dilated) source segments or are bad.
        stamp_size: Window side in pixels.
        n_patches: At most this many windows (drawn with ``rng`` among all source-free ones).

    Returns:
        ``(power, n)``: the (H, W // 2 + 1) spectrum and the number of windows used (0: none found).
    """

    from scipy.ndimage import uniform_filter

    h, w = sub.shape
    half = stamp_size // 2
    busy = uniform_filter(occupied.astype(np.float64), stamp_size, mode="constant", cval=1.0)
    ys, xs = np.nonzero(busy[half: h - stamp_size + half + 1, half: w - stamp_size + half + 1] < 1e-9)
    if len(ys) == 0:
        return np.zeros((stamp_size, stamp_size // 2 + 1)), 0
    pick = rng.choice(len(ys), size=min(n_patches, len(ys)), replace=False)
    power = np.zeros((stamp_size, stamp_size // 2 + 1))
    for y, x in zip(ys[pick], xs[pick]):
        power += np.abs(np.fft.rfft2(sub[y: y + stamp_size, x: x + stamp_size])) ** 2
    return power / (len(pick) * stamp_size**2), len(pick)


def _full_mean(power: np.ndarray, width: int) -> float:
    r"""Mean over the full (H, W) spectrum of a half (rfft2) spectrum = the variance (Parseval)."""

    inner = power[:, 1: (width + 1) // 2].sum()
    edge = power[:, 0].sum() + (power[:, width // 2].sum() if width % 2 == 0 else 0.0)
    return float((edge + 2 * inner) / (power.shape[0] * width))


def cut_stamps(
    image: np.ndarray,
    *,
    weight: np.ndarray | None = None,
    psf: np.ndarray | None = None,
    pixel_scale: float,
    zeropoint_ab: float,
    band: str = "unknown",
    stamp_size: int = 48,
    detect_sigma: float = 3.0,
    min_area_pixel: int = 10,
    deblend_nthresh: int = 32,
    deblend_cont: float = 0.005,
    background_box_pixel: int = 64,
    min_flux_radius_pixel: float = 1.5,
    max_peak_fraction: float = 0.25,
    saturation: float | None = None,
    max_neighbour_fraction: float = 0.2,
    psf_model: str = "moffat",
    psf_fwhm_arcsec: float | None = None,
    psf_moffat_beta: float = 3.5,
    max_stamps: int | None = None,
    noise_power: bool = True,
    noise_patches: int = 256,
    seed: int = 42,
    source: str = "stamps",
) -> GalaxySet:
    r"""Detect, select and cut galaxy stamps from ``image`` (counts); see the module doc for the steps.

    Arguments:
        image: The survey image (H, W) in counts.
        weight: Optional inverse-variance map (1/counts²), same shape; 0 marks bad pixels.
        psf: Optional PSF image at the same pixel scale.
        pixel_scale: arcsec per pixel.
        zeropoint_ab: AB magnitude of 1 count.
        stamp_size: Stamp side in pixels.
        detect_sigma: Detection threshold in units of the background RMS.
        min_flux_radius_pixel: Sources with a smaller half-light radius (pixels) are taken as stars.
        max_peak_fraction: Sources whose peak pixel holds more than this fraction of the flux are point-like.
        saturation: Sources with a peak (background included) above this many counts are rejected.
        max_neighbour_fraction: Largest fraction of stamp pixels that other sources' segments may cover.
        max_stamps: Keep at most this many (the brightest); ``None``: all.
        noise_power: Measure the noise power spectrum on up to ``noise_patches`` source-free windows
            (correlated noise) and store it per stamp, scaled to the stamp's ``noise_sigma``.
    """

    data = np.ascontiguousarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {data.shape}")
    bkg = sep.Background(data, bw=background_box_pixel, bh=background_box_pixel)
    back = bkg.back()
    if weight is not None:
        weight = np.ascontiguousarray(weight, dtype=np.float64)
        if weight.shape != data.shape:
            raise ValueError(f"weight map shape {weight.shape} differs from the image shape {data.shape}")
        rms = np.where(weight > 0, 1.0 / np.sqrt(np.maximum(weight, 1e-300)), np.inf)
        mask = weight <= 0
    else:
        rms = bkg.rms()
        mask = None
    sub = data - back
    objs, seg = sep.extract(sub, detect_sigma, err=rms, mask=mask, minarea=min_area_pixel,
                            deblend_nthresh=deblend_nthresh, deblend_cont=deblend_cont, segmentation_map=True)
    n_det = len(objs)
    if n_det == 0:
        raise ValueError("no source detected (config keys 'stamps.detect_sigma', 'stamps.min_area_pixel')")

    x, y = objs["x"], objs["y"]
    a, b, theta = objs["a"], objs["b"], objs["theta"]
    kronrad, kflag = sep.kron_radius(sub, x, y, a, b, theta, 6.0, mask=mask)
    kronrad = np.where(np.isfinite(kronrad) & (kronrad > 0), kronrad, 1.0)
    flux, _, fflag = sep.sum_ellipse(sub, x, y, a, b, theta, 2.5 * kronrad, subpix=1, mask=mask)
    r_half, rflag = sep.flux_radius(sub, x, y, 6.0 * a, 0.5, normflux=flux, subpix=5, mask=mask)

    half = stamp_size // 2
    xi, yi = np.round(x).astype(int), np.round(y).astype(int)
    h, w = data.shape
    reasons = {
        "flux <= 0 or flagged": ~((flux > 0) & np.isfinite(r_half) & (r_half > 0) & ((fflag | rflag) == 0)),
        "edge": (xi - half < 0) | (yi - half < 0) | (xi - half + stamp_size > w) | (yi - half + stamp_size > h),
        "star (small)": r_half < min_flux_radius_pixel,
        "star (peaked)": objs["peak"] > max_peak_fraction * np.maximum(flux, 1e-300),
    }
    if saturation is not None:
        reasons["saturated"] = (objs["peak"] + back[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]) >= saturation
    keep = np.ones(n_det, bool)
    for why, bad in reasons.items():
        log.info("stamps: %d of %d detections rejected: %s", int((bad & keep).sum()), n_det, why)
        keep &= ~bad

    if psf is not None:
        psf_image = _fit_psf_image(psf, stamp_size)
        fwhm = None
    else:
        fwhm = psf_fwhm_arcsec
        if fwhm is None:
            good = np.isfinite(r_half) & (r_half > 0) & (flux > 0)
            fwhm = 2.0 * float(np.percentile(r_half[good], 5)) * pixel_scale
            log.info("stamps: PSF FWHM estimated from the compact sources: %.3f arcsec", fwhm)
        psf_image = gaussian_or_moffat_psf(stamp_size, pixel_scale, fwhm, psf_model, psf_moffat_beta)

    images, sigmas, rows, n_crowded = [], [], [], 0
    for i in np.flatnonzero(keep)[np.argsort(-flux[keep])]:
        ys = slice(yi[i] - half, yi[i] - half + stamp_size)
        xs = slice(xi[i] - half, xi[i] - half + stamp_size)
        labels = seg[ys, xs]
        other = (labels != 0) & (labels != i + 1)
        if other.mean() > max_neighbour_fraction:
            n_crowded += 1
            continue
        sigma = float(np.median(rms[ys, xs][np.isfinite(rms[ys, xs])]))
        stamp = sub[ys, xs].copy()
        rng = item_rng(seed, int(i), "stamps-neighbour-noise")
        stamp[other] = rng.normal(0.0, sigma, int(other.sum()))
        images.append(stamp)
        sigmas.append(sigma)
        rows.append(i)
        if max_stamps is not None and len(rows) >= max_stamps:
            break
    log.info("stamps: %d rejected for neighbours covering > %.0f%% of the stamp; %d stamps kept of %d detections",
             n_crowded, 100 * max_neighbour_fraction, len(rows), n_det)
    if not rows:
        raise ValueError("no stamp left after the cuts (config section 'stamps')")

    power = None
    if noise_power:
        from scipy.ndimage import binary_dilation

        occupied = binary_dilation(seg > 0, iterations=3) | ~np.isfinite(rms)
        if mask is not None:
            occupied |= mask
        sky, n_sky = sky_noise_power(sub, occupied, stamp_size, item_rng(seed, 0, "stamps-sky-patches"),
                                     noise_patches)
        if n_sky < 10:
            log.warning("stamps: only %d source-free %d-pixel windows; no noise_power written", n_sky, stamp_size)
        else:
            sky = np.maximum(sky, 1e-6 * sky.max())
            power = sky / _full_mean(sky, stamp_size)  # unit variance; scaled per stamp below
            log.info("stamps: noise power spectrum from %d source-free windows (sky variance %.4g counts^2)",
                     n_sky, _full_mean(sky, stamp_size))

    idx = np.array(rows)
    order = np.argsort(idx)  # keep detection order, independent of the flux sort
    idx = idx[order]
    images_arr = np.stack(images)[order][:, None].astype(np.float32)
    r_arcsec = r_half[idx] * pixel_scale
    catalog = {
        "id": idx.astype(np.int64),
        "mag": zeropoint_ab - 2.5 * np.log10(flux[idx]),
        "flux": flux[idx].astype(np.float64),
        "flux_radius_arcsec": r_arcsec,
        "hlr_arcsec": r_arcsec.copy(),
        "q": (b[idx] / a[idx]).astype(np.float64),
        "beta_rad": theta[idx].astype(np.float64),
        "x_pixel": x[idx].astype(np.float64),
        "y_pixel": y[idx].astype(np.float64),
    }
    attrs: dict[str, Any] = {
        "pixel_scale_arcsec": float(pixel_scale),
        "band": band,
        "zeropoint_ab": float(zeropoint_ab),
        "source": source,
        "n_detections": int(n_det),
    }
    if fwhm is not None:
        attrs["psf_fwhm_arcsec"] = float(fwhm)
        attrs["psf_model"] = psf_model
    sigma_arr = np.asarray(sigmas, np.float64)[order]
    return GalaxySet(
        images=images_arr,
        psf=psf_image[None, None].astype(np.float32),
        noise_sigma=sigma_arr.astype(np.float32),
        noise_power=None if power is None else (power[None, None] * sigma_arr[:, None, None, None] ** 2).astype(np.float32),
        catalog=catalog,
        attrs=attrs,
    )


def run_hdf_image(*, image: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    r"""Rule ``hdf_image``: scikit-image's Hubble Deep Field as a single-band FITS image (:func:`write_hubble_deep_field`).

    Arguments:
        image: Output FITS file.
        config: ``{"stamps": {"pixel_scale_arcsec": ...}}`` from the validated config.
    """

    return write_hubble_deep_field(image, pixel_scale=float(config["stamps"]["pixel_scale_arcsec"]))


def run_cut_stamps(
    *,
    image: str | os.PathLike,
    raw: str | os.PathLike,
    config: Mapping[str, Any],
    weight: str | os.PathLike | None = None,
    psf: str | os.PathLike | None = None,
) -> None:
    r"""Rule ``cut_stamps``: read the FITS image (and optional weight map / PSF), cut stamps, write ``raw``.

    Arguments:
        image: The survey image (FITS).
        raw: The galaxy file to write (``results/data/raw.h5``).
        config: ``{"stamps": ..., "seed": ...}`` from the validated config.
        weight: Optional inverse-variance weight map (FITS), same grid as ``image``.
        psf: Optional PSF image (FITS).
    """

    stamps = config["stamps"]
    gs = cut_stamps(
        read_fits_image(image, "image"),
        weight=read_fits_image(weight, "weight") if weight else None,
        psf=read_fits_image(psf, "PSF") if psf else None,
        pixel_scale=float(stamps["pixel_scale_arcsec"]),
        zeropoint_ab=float(stamps["zeropoint_ab"]),
        band=str(stamps["band"]),
        stamp_size=int(stamps["stamp_size"]),
        detect_sigma=float(stamps["detect_sigma"]),
        min_area_pixel=int(stamps["min_area_pixel"]),
        deblend_nthresh=int(stamps["deblend_nthresh"]),
        deblend_cont=float(stamps["deblend_cont"]),
        background_box_pixel=int(stamps["background_box_pixel"]),
        min_flux_radius_pixel=float(stamps["min_flux_radius_pixel"]),
        max_peak_fraction=float(stamps["max_peak_fraction"]),
        saturation=stamps["saturation"],
        max_neighbour_fraction=float(stamps["max_neighbour_fraction"]),
        psf_model=str(stamps["psf_model"]),
        psf_fwhm_arcsec=stamps["psf_fwhm_arcsec"],
        psf_moffat_beta=float(stamps["psf_moffat_beta"]),
        max_stamps=stamps["max_stamps"],
        noise_power=bool(stamps["noise_power"]),
        noise_patches=int(stamps["noise_patches"]),
        seed=int(config["seed"]),
    )
    write_galaxies(raw, gs)
    log.info("wrote %d stamps from %s to %s", len(gs), image, raw)
