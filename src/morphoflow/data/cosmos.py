r"""GalSim's COSMOS training sample (HST/ACS F814W, Mandelbaum et al. 2012) → the data contract.

The catalogs are read with GalSim's own :class:`galsim.COSMOSCatalog` (which applies GalSim's
documented exclusion cuts) and each galaxy is drawn as in Lanusse et al. (2021): the
:class:`galsim.RealGalaxy` convolved with its own original PSF, drawn ``no_pixel`` on a fixed
stamp (default 128 × 128 at 0.03 arcsec/pixel), i.e. the observed COSMOS image recentred and
padded with correlated noise. With it come

* ``psf``: the galaxy's original (effective, pixel-convolved) PSF drawn ``no_pixel`` on the same
  stamp, unit sum, centre at (H // 2, W // 2);
* ``noise_sigma``: sqrt of the catalog's noise variance (counts/s), times :math:`(s/s_0)^2` for a stamp
  pixel scale :math:`s` other than the catalog's :math:`s_0` (``no_pixel`` drawing samples surface
  brightness, so pixel values, noise included, scale with the pixel area);
* ``noise_power``: the FFT of the noise correlation function drawn on the stamp grid, i.e.
  :math:`E|\mathrm{rfft2}(n)|^2 / (HW)` in counts² (floored at 1e-6 of its maximum);
* catalog: ``mag`` ← ``mag_auto`` (AB), ``hlr_arcsec`` ← ``flux_radius`` × 0.03 (flux_radius is in
  0.03" pixels), ``redshift`` ← ``zphot``, ``sersic_n`` and ``q`` from the single-Sérsic fit.

Pixels are in counts/s of a 1 s HST exposure, for which the F814W AB zero point is 25.94.
Galaxies are drawn in parallel threads; each uses its own GalSim random stream derived from
``(seed, IDENT)``, so the output does not depend on the thread count.
"""

from __future__ import annotations

__all__ = [
    "COSMOS_PIXEL_SCALE",
    "COSMOS_ZEROPOINT",
    "NoisePowerError",
    "centred_noise",
    "draw_galaxy",
    "extract_sample",
    "find_catalog",
    "noise_power",
    "open_catalog",
    "read_cosmos",
    "run_cosmos",
]

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from tqdm.auto import tqdm

from ..contract import GalaxySet, write_galaxies
from ..seeding import item_seed
from .archive import safe_extract
from .download import verify

log = logging.getLogger(__name__)

COSMOS_PIXEL_SCALE = 0.03  #: arcsec / pixel of the COSMOS ACS coadds (and of flux_radius)
COSMOS_ZEROPOINT = 25.94  #: AB magnitude of 1 count/s in ACS F814W (GalSim's COSMOSCatalog)


def find_catalog(folder: str | os.PathLike, sample: str) -> Path:
    r"""Return the ``real_galaxy_catalog_<sample>.fits`` under ``folder`` (searched recursively)."""

    name = f"real_galaxy_catalog_{sample}.fits"
    hits = sorted(Path(folder).rglob(name))
    if not hits:
        raise FileNotFoundError(f"{folder}: no '{name}' found (is config download.sample '{sample}' right?)")
    return hits[0]


def open_catalog(folder: str | os.PathLike, sample: str, cosmos: Mapping[str, Any]) -> galsim.COSMOSCatalog:
    r"""Open the sample with :class:`galsim.COSMOSCatalog` and its exclusion cuts.

    Arguments:
        folder: Folder holding (possibly in a subfolder) the unpacked training sample.
        sample: ``"25.2"`` or ``"23.5"`` (F814W limiting magnitude, config ``download.sample``).
        cosmos: The validated ``cosmos`` config section; its cuts: ``exclusion_level`` (``none``, ``bad_stamp``,
            ``bad_fits`` or ``marginal``, GalSim's levels), ``min_hlr_arcsec`` / ``max_hlr_arcsec`` (Sérsic-fit
            half-light radius in arcsec) and ``min_flux`` / ``max_flux`` (Sérsic-fit flux in counts/s); 0: no cut.
    """

    cat_file = find_catalog(folder, sample)
    try:
        return galsim.COSMOSCatalog(
            file_name=cat_file.name,
            dir=str(cat_file.parent),
            exclusion_level=str(cosmos["exclusion_level"]),
            min_hlr=float(cosmos["min_hlr_arcsec"]),
            max_hlr=float(cosmos["max_hlr_arcsec"]),
            min_flux=float(cosmos["min_flux"]),
            max_flux=float(cosmos["max_flux"]),
        )
    except (OSError, KeyError, galsim.GalSimError) as err:
        raise ValueError(f"{cat_file}: not a readable COSMOS training sample ({err})") from err


class NoisePowerError(ValueError):
    r"""A noise correlation image whose power spectrum has significant negative power (not a correlation function)."""


def centred_noise(
    correlation: galsim.Image | None, variance: float, *, rng: galsim.BaseDeviate | None = None
) -> galsim.BaseCorrelatedNoise:
    r"""The correlated noise of a correlation-function image, with lag 0 at the image's peak.

    GalSim's ``RealGalaxyCatalog.getNoise`` centres the correlation image on its *true* centre, which for an
    even-sized image lies half a pixel from any pixel: lag 0 then sits between pixels and the power spectrum
    drawn from it is modulated. Here lag 0 is placed explicitly on the peak pixel (a correlation function
    peaks at lag 0), wherever it is in the image.

    Arguments:
        correlation: The correlation function image (any size; its scale in arcsec/pixel), or ``None``
            for white noise.
        variance: The noise variance (counts²), the value at lag 0.
        rng: Random deviate of the noise object (not used to compute spectra).
    """

    if correlation is None:
        return galsim.UncorrelatedNoise(variance, rng=rng, scale=1.0)
    arr = correlation.array
    py, px = np.unravel_index(int(np.argmax(arr)), arr.shape)
    peak = galsim.PositionD(correlation.xmin + px, correlation.ymin + py)
    centre = correlation.center
    ii = galsim.InterpolatedImage(
        correlation,
        normalization="sb",
        calculate_stepk=False,
        calculate_maxk=False,
        x_interpolant="linear",
        use_true_center=False,
        offset=galsim.PositionD(peak.x - centre.x, peak.y - centre.y),
    )
    return galsim.BaseCorrelatedNoise(rng, ii, correlation.wcs).withVariance(variance)


def noise_power(
    noise: galsim.BaseCorrelatedNoise, shape: tuple[int, int], pixel_scale: float, *, max_negative: float = 1e-3
) -> np.ndarray:
    r"""Noise power spectrum :math:`E|\mathrm{rfft2}(n)|^2 / (HW)` (counts²) of ``noise`` on an H × W grid.

    The correlation function is drawn with lag 0 at pixel (H // 2, W // 2) (GalSim draws correlated noise
    at the nominal centre) and moved to pixel (0, 0) before the FFT; white noise of variance σ² gives σ²
    everywhere. Build ``noise`` from a correlation image with :func:`centred_noise`.

    Raises:
        NoisePowerError: a mode has negative power below ``-max_negative`` × the largest power (the
            correlation function is off-centre or not positive definite); tiny negative modes are floored
            at 1e-6 of the maximum.
    """

    h, w = shape
    cf = galsim.ImageD(w, h, scale=pixel_scale)
    noise.drawImage(cf)
    ps = np.fft.rfft2(np.fft.ifftshift(cf.array)).real
    top = float(ps.max())
    if not top > 0 or ps.min() < -max_negative * top:
        share = float(np.mean(ps < -max_negative * top))
        raise NoisePowerError(
            f"noise power spectrum on a {h} x {w} grid has negative power ({share:.0%} of modes, "
            f"min {ps.min():.3g} vs max {top:.3g}): the noise correlation image is not a centred correlation "
            "function (its peak must be lag 0)"
        )
    return np.maximum(ps, 1e-6 * top)


def draw_galaxy(cat: galsim.COSMOSCatalog, index: int, cosmos: Mapping[str, Any], *, seed: int) -> dict[str, Any]:
    r"""Draw galaxy ``index`` (after cuts) of ``cat``: image, PSF (unit sum), noise power and variance.

    Arguments:
        cat: The opened sample (:func:`open_catalog`).
        index: The galaxy's index after the cuts.
        cosmos: The validated ``cosmos`` config section: ``stamp_size`` (pixels), ``pixel_scale_arcsec``
            and ``noise_pad_arcsec``, the size of the correlated-noise padding around the original stamp in
            arcsec (``None``: the stamp diagonal, so the padding covers the whole stamp).
        seed: The run's seed; the padding noise uses ``item_seed(seed, IDENT, "cosmos-pad")``.
    """

    stamp_size, pixel_scale = int(cosmos["stamp_size"]), float(cosmos["pixel_scale_arcsec"])
    noise_pad_arcsec = cosmos["noise_pad_arcsec"]
    orig = int(cat.getOrigIndex(index))
    ident = int(cat.real_cat.ident[orig])
    pad = noise_pad_arcsec if noise_pad_arcsec is not None else stamp_size * pixel_scale * np.sqrt(2.0)
    rng = galsim.BaseDeviate(item_seed(seed, ident, "cosmos-pad") % (2**31 - 1) + 1)
    gal = cat.makeGalaxy(index, gal_type="real", noise_pad_size=pad, rng=rng)
    psf = gal.original_psf
    opts = dict(nx=stamp_size, ny=stamp_size, scale=pixel_scale, method="no_pixel", use_true_center=False)
    image = galsim.Convolve(gal, psf).drawImage(**opts).array
    psf_image = psf.drawImage(**opts).array
    psf_image = psf_image / psf_image.sum()
    correlation, native, variance = cat.real_cat.getNoiseProperties(orig)
    # no_pixel samples surface brightness: pixel values, noise included, scale with the pixel area
    gain = (pixel_scale / float(native)) ** 4
    noise = centred_noise(correlation, variance)
    return {
        "id": ident,
        "orig_index": orig,
        "image": image.astype(np.float32),
        "psf": psf_image.astype(np.float32),
        "noise_power": (gain * noise_power(noise, (stamp_size, stamp_size), pixel_scale)).astype(np.float32),
        "variance": gain * float(variance),
    }


def _catalog_columns(cat: galsim.COSMOSCatalog) -> dict[str, np.ndarray]:
    r"""Catalog columns of the galaxies after the cuts (module docstring: ``mag``, ``hlr_arcsec``, ...)."""

    p = cat.param_cat[cat.orig_index]
    sersic = np.asarray(p["sersicfit"], dtype=np.float64)
    return {
        "mag": np.asarray(p["mag_auto"], np.float64),
        "hlr_arcsec": np.asarray(p["flux_radius"], np.float64) * COSMOS_PIXEL_SCALE,
        "redshift": np.asarray(p["zphot"], np.float64),
        "sersic_n": sersic[:, 2],
        "q": sersic[:, 3],
    }


def _draw_all(
    cat: galsim.COSMOSCatalog, keep: np.ndarray, cosmos: Mapping[str, Any], seed: int, threads: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r""":func:`draw_galaxy` of the galaxies ``keep`` in ``threads`` threads.

    Returns:
        ``(images, psfs, powers, ids, variances)``: (n, 1, s, s), (n, 1, s, s), (n, 1, s, s // 2 + 1) float32,
        IDENT (n,) int64 and noise variance (n,) float64.
    """

    def one(i: int) -> dict[str, Any]:
        return draw_galaxy(cat, int(i), cosmos, seed=seed)

    # Filled in place (not stacked from lists) to hold the pixels once: ~160 kB per 128² galaxy.
    n, s = len(keep), int(cosmos["stamp_size"])
    images = np.empty((n, 1, s, s), np.float32)
    psfs = np.empty((n, 1, s, s), np.float32)
    powers = np.empty((n, 1, s, s // 2 + 1), np.float32)
    ids, variances = np.empty(n, np.int64), np.empty(n, np.float64)
    with ThreadPoolExecutor(max_workers=max(int(threads), 1)) as pool:
        drawn = pool.map(one, keep)
        for j, d in enumerate(tqdm(drawn, total=n, desc="COSMOS stamps", disable=not progress)):
            images[j, 0], psfs[j, 0], powers[j, 0] = d["image"], d["psf"], d["noise_power"]
            ids[j], variances[j] = d["id"], d["variance"]
    return images, psfs, powers, ids, variances


def read_cosmos(
    folder: str | os.PathLike,
    cosmos: Mapping[str, Any],
    *,
    sample: str,
    seed: int,
    threads: int = 1,
    progress: bool = True,
) -> GalaxySet:
    r"""Read the COSMOS training sample under ``folder`` into a :class:`GalaxySet` (see module doc).

    Galaxies without a finite ``mag_auto``, ``flux_radius`` > 0 and ``zphot`` ≥ 0 are dropped (logged).

    Arguments:
        folder: Folder holding (possibly in a subfolder) the unpacked training sample.
        cosmos: The validated ``cosmos`` config section (cuts, ``max_galaxies``: keep the first that many
            galaxies after the cuts, ``None``: all; stamp size, pixel scale, noise padding).
        sample: ``"25.2"`` or ``"23.5"`` (config ``download.sample``).
        seed: The run's seed (noise padding of each galaxy).
        threads: Drawing threads (the output does not depend on it).
        progress: Show a progress bar.
    """

    cat = open_catalog(folder, sample, cosmos)
    columns = _catalog_columns(cat)
    ok = np.isfinite(columns["mag"]) & (columns["hlr_arcsec"] > 0) & (columns["redshift"] >= 0)
    ok &= np.isfinite(columns["sersic_n"]) & np.isfinite(columns["q"])
    keep = np.flatnonzero(ok)
    if cosmos["max_galaxies"] is not None:
        keep = keep[: cosmos["max_galaxies"]]
    log.info(
        "%s: %d galaxies in the catalog, %d after exclusion level '%s' and size/flux cuts, "
        "%d with valid mag/size/redshift; drawing %d",
        folder,
        cat.getNTot(),
        cat.nobjects,
        cosmos["exclusion_level"],
        int(ok.sum()),
        len(keep),
    )
    if len(keep) == 0:
        raise ValueError(f"{folder}: no COSMOS galaxy is left after the cuts (config section 'cosmos')")

    images, psfs, powers, ids, variances = _draw_all(cat, keep, cosmos, seed, threads, progress)
    catalog = {"id": ids}
    catalog.update({k: v[keep] for k, v in columns.items()})
    return GalaxySet(
        images=images,
        psf=psfs,
        noise_sigma=np.sqrt(variances).astype(np.float32),
        noise_power=powers,
        catalog=catalog,
        attrs={
            "pixel_scale_arcsec": float(cosmos["pixel_scale_arcsec"]),
            "band": "F814W",
            "zeropoint_ab": COSMOS_ZEROPOINT,
            "source": "cosmos",
            "cosmos_sample": str(sample),
            "cosmos_exclusion_level": str(cosmos["exclusion_level"]),
        },
    )


def extract_sample(
    tarball: str | os.PathLike, dest: str | os.PathLike | None = None, *, known_hash: str | None = None
) -> Path:
    r"""Unpack ``tarball`` safely into ``dest`` (default: ``<tarball without .tar.gz>_unpacked/``).

    A previous extraction of the same file (name and size recorded in ``dest/.source``) is reused.
    Before extracting, the tarball is checked with :func:`morphoflow.data.download.verify` (against
    ``known_hash``, or the recorded ``<tarball>.sha256``, which is written if missing).
    """

    tarball = Path(tarball)
    dest = Path(dest) if dest is not None else tarball.with_name(tarball.name.removesuffix(".tar.gz") + "_unpacked")
    stamp = f"{tarball.name} {tarball.stat().st_size}\n"
    marker = dest / ".source"
    if marker.exists() and marker.read_text() == stamp:
        log.info("reusing the extraction of %s in %s", tarball, dest)
        return dest
    verify(tarball, known_hash)
    safe_extract(tarball, dest)
    marker.write_text(stamp)
    return dest


def run_cosmos(
    *, tarball: str | os.PathLike, raw: str | os.PathLike, config: Mapping[str, Any], threads: int = 1
) -> None:
    r"""Rule ``cosmos``: unpack the downloaded tarball and write the galaxy file ``raw`` (contract layout).

    Arguments:
        tarball: The downloaded ``COSMOS_<sample>_training_sample.tar.gz``.
        raw: The galaxy file to write (``results/data/raw.h5``).
        config: ``{"cosmos": ..., "download": {"sample", "known_hash"}, "seed": ...}`` from the validated config.
        threads: Worker threads of the reader.
    """

    cosmos, dl = config["cosmos"], config["download"]
    folder = extract_sample(tarball, cosmos["extract_dir"], known_hash=dl["known_hash"])
    gs = read_cosmos(folder, cosmos, sample=dl["sample"], seed=int(config["seed"]), threads=threads)
    write_galaxies(raw, gs, raw=True)
    log.info("wrote %d COSMOS galaxies to %s", len(gs), raw)
