r"""Galaxy stamps cut from a survey image (FITS) with SEP (Barbary 2016; Bertin & Arnouts 1996).

Steps of :func:`cut_stamps`, one function each, with the keys of the ``stamps`` config section
(``morphoflow/schemas/stamps.schema.yaml``):

1. background and its RMS with :class:`sep.Background` (or the RMS from a weight map, 1/sqrt(w))
   (:func:`_background`);
2. detection and deblending with :func:`sep.extract` (segmentation map kept) (:func:`_detect`);
3. photometry: Kron ("AUTO") flux in counts and half-light radius (``sep.flux_radius``) in pixels
   (:func:`_photometry`);
4. rejections: flagged or non-positive flux, stars (half-light radius below ``min_flux_radius_pixel``
   or peak / flux above ``max_peak_fraction``: point-like), saturated sources (peak above
   ``saturation``), sources whose stamp would cross the image edge, and sources whose stamp is
   covered by other sources' segments above ``max_neighbour_fraction`` (:func:`_reject`);
5. stamps of ``stamp_size`` pixels centred on the source's pixel (centre at (H // 2, W // 2)), the
   local background subtracted, neighbours' segment pixels replaced by Gaussian noise of the local
   RMS (seeded per source, :func:`morphoflow.seeding.item_rng`) (:func:`_cut`);
6. PSF: a given PSF image (cropped/padded to the stamp, unit sum) or a Moffat / Gaussian of FWHM
   ``psf_fwhm_arcsec`` drawn by GalSim (pixel-convolved); a FWHM of ``None`` is estimated as twice
   the 5th percentile of the detected half-light radii (point sources have r½ = FWHM / 2 for a Gaussian)
   (:func:`_stamp_psf`);
7. noise: ``noise_sigma`` = median background RMS in the stamp; ``noise_power`` (correlated noise, e.g.
   JPEG-processed or resampled images) = mean :math:`|\mathrm{rfft2}|^2/(HW)` of up to ``noise_patches``
   source-free windows, normalised to unit variance and scaled by each stamp's ``noise_sigma²``
   (:func:`_unit_noise_power`).

:func:`_galaxy_set` puts the stamps back in detection order with their catalog and attributes.

The catalog has ``mag`` = zeropoint − 2.5 log10(flux), ``flux`` (counts), ``flux_radius_arcsec`` and
``hlr_arcsec`` (the same half-light radius), ``q`` (b/a), ``beta_rad``, ``x_pixel``, ``y_pixel`` (0-based).
No redshift is available: flows on these data condition on ``[mag, hlr_arcsec]``.
"""

from __future__ import annotations

__all__ = [
    "HDF_PIXEL_SCALE",
    "cut_stamps",
    "gaussian_or_moffat_psf",
    "read_fits_image",
    "rgb_to_band",
    "run_cut_stamps",
    "run_hdf_image",
    "sky_noise_power",
    "write_hubble_deep_field",
]

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

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


def gaussian_or_moffat_psf(size: int, pixel_scale: float, fwhm_arcsec: float, model: str, beta: float) -> np.ndarray:
    r"""A (size, size) pixel-convolved PSF image (unit sum, centre at (size // 2, size // 2)).

    ``model`` is ``moffat`` (index ``beta``) or ``gaussian``; ``pixel_scale`` and ``fwhm_arcsec`` in arcsec.
    """

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
            out[oy, xs.start - x0 : xs.stop - x0] = psf[y, xs]
    if out.sum() <= 0:
        raise ValueError("the PSF image has no positive flux")
    return out / out.sum()


def sky_noise_power(
    sub: np.ndarray,
    occupied: np.ndarray,
    stamp_size: int,
    rng: np.random.Generator,
    n_patches: int,
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
    ys, xs = np.nonzero(busy[half : h - stamp_size + half + 1, half : w - stamp_size + half + 1] < 1e-9)
    if len(ys) == 0:
        return np.zeros((stamp_size, stamp_size // 2 + 1)), 0
    pick = rng.choice(len(ys), size=min(n_patches, len(ys)), replace=False)
    power = np.zeros((stamp_size, stamp_size // 2 + 1))
    for y, x in zip(ys[pick], xs[pick], strict=False):
        power += np.abs(np.fft.rfft2(sub[y : y + stamp_size, x : x + stamp_size])) ** 2
    return power / (len(pick) * stamp_size**2), len(pick)


def _full_mean(power: np.ndarray, width: int) -> float:
    r"""Mean over the full (H, W) spectrum of a half (rfft2) spectrum = the variance (Parseval)."""

    inner = power[:, 1 : (width + 1) // 2].sum()
    edge = power[:, 0].sum() + (power[:, width // 2].sum() if width % 2 == 0 else 0.0)
    return float((edge + 2 * inner) / (power.shape[0] * width))


class _Sky(NamedTuple):
    r"""Step 1: the background-subtracted image and its noise."""

    sub: np.ndarray  #: image − background (counts)
    back: np.ndarray  #: background (counts)
    rms: np.ndarray  #: background RMS (counts); ``inf`` on bad pixels of a weight map
    mask: np.ndarray | None  #: bad pixels (weight 0), or ``None`` without a weight map


class _Sources(NamedTuple):
    r"""Steps 2–3: the detections, their segmentation map and photometry (one entry per detection)."""

    objs: np.ndarray  #: :func:`sep.extract`'s catalog (x, y, a, b, theta in pixels / rad, peak in counts)
    seg: np.ndarray  #: segmentation map, detection ``i`` labelled ``i + 1``
    flux: np.ndarray  #: Kron flux (counts)
    r_half: np.ndarray  #: half-light radius (pixels)
    flagged: np.ndarray  #: SEP flags of the Kron sum and the flux radius (0: clean)
    xi: np.ndarray  #: stamp centre column (pixel nearest to x)
    yi: np.ndarray  #: stamp centre row (pixel nearest to y)


def _background(data: np.ndarray, weight: np.ndarray | None, stamps: Mapping[str, Any]) -> _Sky:
    r"""Step 1: background with :class:`sep.Background`; its RMS from there or from the weight map (1/sqrt(w))."""

    box = int(stamps["background_box_pixel"])
    bkg = sep.Background(data, bw=box, bh=box)
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
    return _Sky(sub=data - back, back=back, rms=rms, mask=mask)


def _detect(sky: _Sky, stamps: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    r"""Step 2: detection and deblending with :func:`sep.extract`; returns (catalog, segmentation map)."""

    objs, seg = sep.extract(
        sky.sub,
        float(stamps["detect_sigma"]),
        err=sky.rms,
        mask=sky.mask,
        minarea=int(stamps["min_area_pixel"]),
        deblend_nthresh=int(stamps["deblend_nthresh"]),
        deblend_cont=float(stamps["deblend_cont"]),
        segmentation_map=True,
    )
    if len(objs) == 0:
        raise ValueError("no source detected (config keys 'stamps.detect_sigma', 'stamps.min_area_pixel')")
    return objs, seg


def _photometry(sky: _Sky, objs: np.ndarray, seg: np.ndarray) -> _Sources:
    r"""Step 3: Kron ("AUTO") flux (counts) and half-light radius (pixels) of every detection."""

    sub, mask = sky.sub, sky.mask
    x, y = objs["x"], objs["y"]
    a, b, theta = objs["a"], objs["b"], objs["theta"]
    kronrad, _kflag = sep.kron_radius(sub, x, y, a, b, theta, 6.0, mask=mask)
    kronrad = np.where(np.isfinite(kronrad) & (kronrad > 0), kronrad, 1.0)
    flux, _, fflag = sep.sum_ellipse(sub, x, y, a, b, theta, 2.5 * kronrad, subpix=1, mask=mask)
    r_half, rflag = sep.flux_radius(sub, x, y, 6.0 * a, 0.5, normflux=flux, subpix=5, mask=mask)
    return _Sources(
        objs=objs,
        seg=seg,
        flux=flux,
        r_half=r_half,
        flagged=fflag | rflag,
        xi=np.round(x).astype(int),
        yi=np.round(y).astype(int),
    )


def _reject(src: _Sources, sky: _Sky, stamps: Mapping[str, Any]) -> np.ndarray:
    r"""Step 4: mask (N,) of the detections that pass the cuts; each rejection reason is logged."""

    size = int(stamps["stamp_size"])
    half = size // 2
    xi, yi, flux, r_half, peak = src.xi, src.yi, src.flux, src.r_half, src.objs["peak"]
    h, w = sky.sub.shape
    reasons = {
        "flux <= 0 or flagged": ~((flux > 0) & np.isfinite(r_half) & (r_half > 0) & (src.flagged == 0)),
        "edge": (xi - half < 0) | (yi - half < 0) | (xi - half + size > w) | (yi - half + size > h),
        "star (small)": r_half < float(stamps["min_flux_radius_pixel"]),
        "star (peaked)": peak > float(stamps["max_peak_fraction"]) * np.maximum(flux, 1e-300),
    }
    if stamps["saturation"] is not None:
        reasons["saturated"] = (peak + sky.back[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]) >= stamps["saturation"]
    n_det = len(flux)
    keep = np.ones(n_det, bool)
    for why, bad in reasons.items():
        log.info("stamps: %d of %d detections rejected: %s", int((bad & keep).sum()), n_det, why)
        keep &= ~bad
    return keep


def _stamp_psf(psf: np.ndarray | None, src: _Sources, stamps: Mapping[str, Any]) -> tuple[np.ndarray, float | None]:
    r"""Step 6: the stamps' PSF (size², unit sum) and the analytic model's FWHM in arcsec (``None``: PSF image)."""

    size = int(stamps["stamp_size"])
    if psf is not None:
        return _fit_psf_image(psf, size), None
    pixel_scale = float(stamps["pixel_scale_arcsec"])
    fwhm = stamps["psf_fwhm_arcsec"]
    if fwhm is None:
        r_half, flux = src.r_half, src.flux
        good = np.isfinite(r_half) & (r_half > 0) & (flux > 0)
        fwhm = 2.0 * float(np.percentile(r_half[good], 5)) * pixel_scale
        log.info("stamps: PSF FWHM estimated from the compact sources: %.3f arcsec", fwhm)
    image = gaussian_or_moffat_psf(size, pixel_scale, fwhm, str(stamps["psf_model"]), float(stamps["psf_moffat_beta"]))
    return image, fwhm


def _cut(
    src: _Sources, sky: _Sky, keep: np.ndarray, stamps: Mapping[str, Any], seed: int
) -> tuple[list[np.ndarray], list[float], list[int]]:
    r"""Step 5: stamps of the kept detections, brightest first, neighbours' pixels replaced by noise.

    Returns:
        ``(images, sigmas, rows)``: the stamps (counts), their median background RMS (counts) and their
        detection indices, in decreasing flux (at most ``stamps.max_stamps``).
    """

    size, max_stamps = int(stamps["stamp_size"]), stamps["max_stamps"]
    max_fraction = float(stamps["max_neighbour_fraction"])
    half = size // 2
    images, sigmas, rows, n_crowded = [], [], [], 0
    for i in np.flatnonzero(keep)[np.argsort(-src.flux[keep])]:
        ys = slice(src.yi[i] - half, src.yi[i] - half + size)
        xs = slice(src.xi[i] - half, src.xi[i] - half + size)
        labels = src.seg[ys, xs]
        other = (labels != 0) & (labels != i + 1)
        if other.mean() > max_fraction:
            n_crowded += 1
            continue
        sigma = float(np.median(sky.rms[ys, xs][np.isfinite(sky.rms[ys, xs])]))
        stamp = sky.sub[ys, xs].copy()
        rng = item_rng(seed, int(i), "stamps-neighbour-noise")
        stamp[other] = rng.normal(0.0, sigma, int(other.sum()))
        images.append(stamp)
        sigmas.append(sigma)
        rows.append(i)
        if max_stamps is not None and len(rows) >= max_stamps:
            break
    log.info(
        "stamps: %d rejected for neighbours covering > %.0f%% of the stamp; %d stamps kept of %d detections",
        n_crowded,
        100 * max_fraction,
        len(rows),
        len(src.flux),
    )
    if not rows:
        raise ValueError("no stamp left after the cuts (config section 'stamps')")
    return images, sigmas, rows


def _unit_noise_power(src: _Sources, sky: _Sky, stamps: Mapping[str, Any], seed: int) -> np.ndarray | None:
    r"""Step 7: the sky's noise power spectrum (size, size // 2 + 1), normalised to unit variance.

    ``None`` when ``stamps.noise_power`` is off or fewer than 10 source-free windows exist.
    """

    if not stamps["noise_power"]:
        return None
    from scipy.ndimage import binary_dilation

    size = int(stamps["stamp_size"])
    occupied = binary_dilation(src.seg > 0, iterations=3) | ~np.isfinite(sky.rms)
    if sky.mask is not None:
        occupied |= sky.mask
    sky_power, n_sky = sky_noise_power(
        sky.sub, occupied, size, item_rng(seed, 0, "stamps-sky-patches"), int(stamps["noise_patches"])
    )
    if n_sky < 10:
        log.warning("stamps: only %d source-free %d-pixel windows; no noise_power written", n_sky, size)
        return None
    sky_power = np.maximum(sky_power, 1e-6 * sky_power.max())
    log.info(
        "stamps: noise power spectrum from %d source-free windows (sky variance %.4g counts^2)",
        n_sky,
        _full_mean(sky_power, size),
    )
    return sky_power / _full_mean(sky_power, size)  # unit variance; scaled per stamp by the caller


def _galaxy_set(
    src: _Sources,
    stamps: Mapping[str, Any],
    cut: tuple[list[np.ndarray], list[float], list[int]],
    psf: tuple[np.ndarray, float | None],
    power: np.ndarray | None,
    source: str,
) -> GalaxySet:
    r"""The stamps in detection order, with catalog, attributes, PSF and per-stamp noise power (steps 5–7)."""

    images, sigmas, rows = cut
    psf_image, fwhm = psf
    pixel_scale, zeropoint_ab = float(stamps["pixel_scale_arcsec"]), float(stamps["zeropoint_ab"])
    objs, flux, r_half = src.objs, src.flux, src.r_half
    idx = np.array(rows)
    order = np.argsort(idx)  # keep detection order, independent of the flux sort
    idx = idx[order]
    r_arcsec = r_half[idx] * pixel_scale
    catalog = {
        "id": idx.astype(np.int64),
        "mag": zeropoint_ab - 2.5 * np.log10(flux[idx]),
        "flux": flux[idx].astype(np.float64),
        "flux_radius_arcsec": r_arcsec,
        "hlr_arcsec": r_arcsec.copy(),
        "q": (objs["b"][idx] / objs["a"][idx]).astype(np.float64),
        "beta_rad": objs["theta"][idx].astype(np.float64),
        "x_pixel": objs["x"][idx].astype(np.float64),
        "y_pixel": objs["y"][idx].astype(np.float64),
    }
    attrs: dict[str, Any] = {
        "pixel_scale_arcsec": pixel_scale,
        "band": str(stamps["band"]),
        "zeropoint_ab": zeropoint_ab,
        "source": source,
        "n_detections": len(flux),
    }
    if fwhm is not None:
        attrs["psf_fwhm_arcsec"] = float(fwhm)
        attrs["psf_model"] = str(stamps["psf_model"])
    sigma_arr = np.asarray(sigmas, np.float64)[order]
    if power is not None:
        power = (power[None, None] * sigma_arr[:, None, None, None] ** 2).astype(np.float32)
    return GalaxySet(
        images=np.stack(images)[order][:, None].astype(np.float32),
        psf=psf_image[None, None].astype(np.float32),
        noise_sigma=sigma_arr.astype(np.float32),
        noise_power=power,
        catalog=catalog,
        attrs=attrs,
    )


def cut_stamps(
    image: np.ndarray,
    stamps: Mapping[str, Any],
    *,
    seed: int,
    weight: np.ndarray | None = None,
    psf: np.ndarray | None = None,
    source: str = "stamps",
) -> GalaxySet:
    r"""Detect, select and cut galaxy stamps from ``image`` (counts): steps 1–7 of the module docstring.

    Arguments:
        image: The survey image (H, W) in counts.
        stamps: The validated ``stamps`` config section (``morphoflow/schemas/stamps.schema.yaml``): pixel scale,
            zero point, detection, cuts, PSF model and noise settings.
        seed: The run's seed (``config["seed"]``): neighbour-replacement noise and the sky windows.
        weight: Optional inverse-variance map (1/counts²), same shape; 0 marks bad pixels.
        psf: Optional PSF image at the same pixel scale (replaces the analytic ``stamps.psf_model``).
        source: The file's ``source`` attribute.

    Returns:
        Stamps (N, 1, size, size) in counts, in detection order, with a shared PSF, ``noise_sigma`` and
        (``stamps.noise_power``) a per-stamp noise power spectrum.
    """

    data = np.ascontiguousarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {data.shape}")
    sky = _background(data, weight, stamps)
    src = _photometry(sky, *_detect(sky, stamps))
    keep = _reject(src, sky, stamps)
    psf_fit = _stamp_psf(psf, src, stamps)
    cut = _cut(src, sky, keep, stamps, seed)
    power = _unit_noise_power(src, sky, stamps, seed)
    return _galaxy_set(src, stamps, cut, psf_fit, power, source)


def run_hdf_image(*, image: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    r"""Rule ``hdf_image``: scikit-image's Hubble Deep Field as a single-band FITS image.

    See :func:`write_hubble_deep_field`.

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

    gs = cut_stamps(
        read_fits_image(image, "image"),
        config["stamps"],
        seed=int(config["seed"]),
        weight=read_fits_image(weight, "weight") if weight else None,
        psf=read_fits_image(psf, "PSF") if psf else None,
    )
    write_galaxies(raw, gs, raw=True)
    log.info("wrote %d stamps from %s to %s", len(gs), image, raw)
