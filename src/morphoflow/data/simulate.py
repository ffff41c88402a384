r"""The embedded, GalSim-simulated COSMOS-like galaxy data set (rule ``simulate``).

Each galaxy is a Sérsic bulge (index quantised to a grid so that GalSim's Sérsic caches are reused)
plus an exponential disk, sheared to axis ratio ``q`` at position angle ``beta``; part of the disk flux
sits in star-forming clumps placed by ``galsim.RandomKnots`` (positions sheared with the galaxy, each
knot a small round Gaussian). The galaxy is convolved with
an HST/ACS F814W-like PSF and drawn at 0.03 arcsec/pixel, plus COSMOS correlated noise.

Catalog model (all parameters in the ``simulate.catalog`` config section):

* redshift :math:`z \sim 0.1 + \mathrm{Gamma}(k, \theta)`, truncated to ``[redshift_min, redshift_max]``;
* AB magnitude :math:`m \sim \mathcal{N}(m_0 + s_z \log_{10}(1 + z), \sigma_m)` truncated to
  ``[mag_min, mag_max]`` (higher-redshift galaxies are fainter);
* half-light radius :math:`\log_{10} r_e = \log_{10} r_0 - b\,(m - m_p) - c \log_{10}(1 + z) + \epsilon`,
  :math:`\epsilon \sim \mathcal{N}(0, \sigma_r)`, truncated to ``[hlr_min_arcsec, hlr_max_arcsec]``
  (brighter galaxies are larger, higher-redshift galaxies smaller);
* bulge Sérsic index uniform on the grid ``sersic_n_min:sersic_n_step:sersic_n_max``;
  bulge fraction :math:`\sim \mathrm{Beta}(a, b)`; axis ratio uniform on ``[q_min, q_max]``;
  position angle uniform on :math:`[0, \pi)`; knot share of the disk flux uniform on ``[0, knots.max_fraction]``.

Bulge, disk and knots share the half-light radius ``hlr_arcsec`` (the circularised radius
:math:`\sqrt{ab}`, as the shear preserves area), so the composite has that half-light radius too.

Units: pixels are counts in electrons per second of the COSMOS F814W coadds (the units of GalSim's
COSMOS noise field), with AB zero point ``zeropoint_ab`` (25.94, the ACS/WFC F814W value GalSim's COSMOS
catalogue uses): :math:`\mathrm{flux} = 10^{-0.4 (m - \mathrm{zp})}`.

Pixel response: the observed image is GalSim's FFT draw of galaxy ⊛ PSF ⊛ pixel. The ``truth``
(noiseless, PSF-free, pixel-convolved) image integrates the galaxy over each pixel with a
``truth_oversample``² midpoint rule (GalSim's exact real-space pixel convolution, ``method='auto'``
for these profiles, costs about a second per stamp; with 4² samples the midpoint rule agrees with it
to 0.5 % in L1 and 4 % of the peak pixel for an n = 4 bulge of 0.08 arcsec; odd oversampling puts a
sample on the cusp and is refused); the Gaussian knots are integrated over the pixels exactly (erf).
The stored ``psf`` is the PSF drawn with ``method='no_pixel'``, so that ``truth`` ⊛ ``psf`` ≈ the
noiseless observed image.

Noise: GalSim's COSMOS correlation function (``galsim.getCOSMOSNoise``, variance scaled by
``noise.variance_scale``) is drawn on the stamp grid; its FFT is the stored ``noise_power``
(:math:`E|\mathrm{rfft2}(n)|^2 / (HW)`, periodic on the stamp) and each galaxy's noise field is
white Gaussian noise filtered by its square root, seeded per galaxy.

Reference: Mandelbaum et al. 2015 (GalSim COSMOS noise); Leauthaud et al. 2007 (COSMOS ACS).
"""

from __future__ import annotations

__all__ = ["Renderer", "cosmos_noise_power", "draw_catalog_row", "run_simulate", "simulate"]

import logging
import math
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import galsim
import numpy as np
from scipy.special import erf
from tqdm import tqdm

from ..contract import GalaxySet, write_galaxies
from ..seeding import item_rng

log = logging.getLogger(__name__)

CATALOG_COLUMNS = ["mag", "hlr_arcsec", "redshift", "sersic_n", "bulge_fraction", "q", "beta_rad", "flux"]


def _truncated(rng: np.random.Generator, draw: Any, lo: float, hi: float, tries: int = 100) -> float:
    r"""Rejection-sample ``draw()`` until it lands in ``[lo, hi]`` (clipped after ``tries``)."""

    for _ in range(tries):
        x = float(draw())
        if lo <= x <= hi:
            return x
    return float(np.clip(x, lo, hi))


def draw_catalog_row(cat: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    r"""Draw one galaxy's physical parameters from the catalog model (see the module docstring).

    Arguments:
        cat: The ``simulate.catalog`` config section.
        rng: The galaxy's own generator.

    Returns:
        ``redshift``, ``mag`` (AB), ``hlr_arcsec`` (arcsec), ``sersic_n``, ``bulge_fraction``, ``q``,
        ``beta_rad`` (rad).
    """

    z = _truncated(
        rng,
        lambda: 0.1 + rng.gamma(cat["redshift_shape"], cat["redshift_scale"]),
        cat["redshift_min"],
        cat["redshift_max"],
    )
    mag = _truncated(
        rng,
        lambda: rng.normal(cat["mag_m0"] + cat["mag_z_slope"] * math.log10(1 + z), cat["mag_scatter"]),
        cat["mag_min"],
        cat["mag_max"],
    )
    mean = (
        math.log10(cat["hlr_r0_arcsec"])
        - cat["hlr_mag_slope"] * (mag - cat["hlr_mag_pivot"])
        - cat["hlr_z_slope"] * math.log10(1 + z)
    )
    log_hlr = _truncated(
        rng,
        lambda: rng.normal(mean, cat["hlr_scatter_dex"]),
        math.log10(cat["hlr_min_arcsec"]),
        math.log10(cat["hlr_max_arcsec"]),
    )
    grid = np.arange(cat["sersic_n_min"], cat["sersic_n_max"] + 1e-9, cat["sersic_n_step"])
    return {
        "redshift": z,
        "mag": mag,
        "hlr_arcsec": 10**log_hlr,
        "sersic_n": float(rng.choice(grid)),
        "bulge_fraction": float(rng.beta(cat["bulge_fraction_a"], cat["bulge_fraction_b"])),
        "q": float(rng.uniform(cat["q_min"], cat["q_max"])),
        "beta_rad": float(rng.uniform(0.0, math.pi)),
    }


def cosmos_noise_power(shape: tuple[int, int], scale: float, variance_scale: float = 1.0) -> np.ndarray:
    r"""COSMOS correlated-noise power spectrum on an ``(H, W)`` grid, full FFT layout, in counts².

    The correlation function :math:`\xi` of ``galsim.getCOSMOSNoise`` (variance multiplied by
    ``variance_scale``) is drawn at lags on the grid (origin at (H // 2, W // 2)) and Fourier transformed,
    so that :math:`P = E|\mathrm{fft2}(n)|^2 / (HW)` for noise periodic on the stamp and
    :math:`\mathrm{mean}(P) = \xi(0)` is the pixel variance.
    """

    h, w = shape
    cn = galsim.getCOSMOSNoise(rng=galsim.BaseDeviate(1))
    cn = cn.withVariance(cn.getVariance() * variance_scale)
    xi = cn.drawImage(galsim.ImageD(w, h, scale=scale)).array
    if np.unravel_index(np.argmax(xi), xi.shape) != (h // 2, w // 2):
        raise RuntimeError("COSMOS correlation function is not centred at (H // 2, W // 2)")
    power = np.fft.fft2(np.fft.ifftshift(xi)).real
    return np.clip(power, 0.0, None)


class Renderer:
    r"""Renders galaxies for one ``simulate`` config; builds the PSF and noise model once.

    Arguments:
        cfg: The ``simulate`` config section (defaults filled).
    """

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.n = int(cfg["stamp_size"])
        self.scale = float(cfg["pixel_scale_arcsec"])
        self.gsparams = galsim.GSParams(**cfg["gsparams"])
        p = cfg["psf"]
        ov = int(p["oversample"])
        optical = galsim.OpticalPSF(
            lam=p["lam_nm"],
            diam=p["diam_m"],
            obscuration=p["obscuration"],
            nstruts=p["nstruts"],
            defocus=p["defocus"],
            coma1=p["coma1"],
            coma2=p["coma2"],
            gsparams=self.gsparams,
        )
        fine = optical.drawImage(nx=2 * self.n * ov, ny=2 * self.n * ov, scale=self.scale / ov, method="no_pixel")
        #: The PSF as an oversampled InterpolatedImage, shared by every galaxy (arcsec units).
        self.psf = galsim.InterpolatedImage(fine, gsparams=self.gsparams)
        stamp = self.psf.drawImage(
            nx=self.n, ny=self.n, scale=self.scale, method="no_pixel", use_true_center=False
        ).array.astype(np.float64)
        #: PSF stamp (H, W), unit sum, centred at (H // 2, W // 2), without pixel response.
        self.psf_stamp = stamp / stamp.sum()
        #: Noise power spectrum (H, W), full FFT layout, counts².
        self.noise_power = cosmos_noise_power((self.n, self.n), self.scale, cfg["noise"]["variance_scale"])
        self._sqrt_power = np.sqrt(self.noise_power[:, : self.n // 2 + 1])
        self.noise_sigma = float(np.sqrt(self.noise_power.mean()))
        self._bulges: dict[float, galsim.Sersic] = {}
        self._disk = galsim.Exponential(half_light_radius=1.0, gsparams=self.gsparams)
        self._knot = galsim.Gaussian(sigma=cfg["knots"]["sigma_arcsec"], gsparams=self.gsparams)
        self._obs = galsim.ImageF(self.n, self.n, scale=self.scale)
        ts = int(cfg["truth_oversample"])
        if ts < 2 or ts % 2:
            raise ValueError(f"config key 'simulate.truth_oversample' must be even and >= 2, got {ts}")
        self._fine = galsim.ImageF(self.n * ts, self.n * ts, scale=self.scale / ts)
        # Fine-grid (1-indexed) position of the centre of coarse pixel (H // 2, W // 2).
        c = ts * (self.n // 2) + (ts - 1) / 2 + 1
        self._fine_center = galsim.PositionD(c, c)

    def components(self, row: dict[str, float], knot_seed: int) -> tuple[galsim.GSObject, np.ndarray, float]:
        r"""Smooth part (sheared bulge + disk) and knots of one catalog row.

        Returns:
            ``(smooth, knots, knot_flux)``: the smooth profile (flux in counts, arcsec), the knot centres
            (K, 2) in arcsec (x, y) after the galaxy's shear, and the flux of one knot in counts. Knots are
            round Gaussians of ``knots.sigma_arcsec`` placed by ``galsim.RandomKnots``.
        """

        cfg, gsp = self.cfg, self.gsparams
        hlr, flux, bf = row["hlr_arcsec"], row["flux"], row["bulge_fraction"]
        shear = galsim.Shear(q=row["q"], beta=row["beta_rad"] * galsim.radians)
        parts = []
        if bf > 0:
            # Unit-radius profiles built once per Sersic index and dilated: GalSim's size and
            # k-range computations are cached on the base object.
            n = row["sersic_n"]
            if n not in self._bulges:
                self._bulges[n] = galsim.Sersic(n, half_light_radius=1.0, trunc=cfg["sersic_trunc_hlr"], gsparams=gsp)
            parts.append(self._bulges[n].dilate(hlr).withFlux(bf * flux))
        disk = (1 - bf) * flux
        nk = int(cfg["knots"]["n_knots"])
        kf = row["knot_fraction"] if nk > 0 else 0.0  # without knots the disk keeps all its flux
        parts.append(self._disk.dilate(hlr).withFlux(disk * (1 - kf)))
        smooth = galsim.Add(parts).shear(shear)
        if nk > 0 and kf > 0:
            pts = galsim.RandomKnots(nk, half_light_radius=hlr, flux=1.0, rng=galsim.BaseDeviate(knot_seed)).points
            return smooth, np.asarray(pts, np.float64) @ shear.getMatrix().T, disk * kf / nk
        return smooth, np.zeros((0, 2)), 0.0

    def galaxy(self, row: dict[str, float], knot_seed: int) -> galsim.GSObject:
        r"""The PSF-free galaxy profile of one catalog row (flux in counts, sizes in arcsec)."""

        smooth, knots, knot_flux = self.components(row, knot_seed)
        blob = self._knot.withFlux(knot_flux)
        return galsim.Add([smooth] + [blob.shift(float(x), float(y)) for x, y in knots])

    def _knots_truth(self, knots: np.ndarray, knot_flux: float) -> np.ndarray:
        r"""Round Gaussian knots integrated exactly over the pixels (erf), centred on pixel (H//2, W//2)."""

        sigma = float(self.cfg["knots"]["sigma_arcsec"]) * math.sqrt(2.0)
        edges = (np.arange(self.n + 1) - self.n // 2 - 0.5) * self.scale  # pixel edges in arcsec

        def profile(c: np.ndarray) -> np.ndarray:  # (K, n): per-knot pixel integrals along one axis
            return 0.5 * np.diff(erf((edges[None, :] - c[:, None]) / sigma), axis=1)

        return knot_flux * np.einsum("ky,kx->yx", profile(knots[:, 1]), profile(knots[:, 0]))

    def parameters(self, galaxy_id: int, seed: int) -> tuple[dict[str, float], int, int]:
        r"""One galaxy's catalog row (with ``flux`` and ``knot_fraction``), knot seed and noise seed.

        Everything derives from ``item_rng(seed, galaxy_id, "simulate")``, so any galaxy of a data set can
        be redrawn alone (see :mod:`morphoflow.data.floors`).
        """

        cfg = self.cfg
        rng = item_rng(seed, galaxy_id, "simulate")
        row = draw_catalog_row(cfg["catalog"], rng)
        row["flux"] = 10 ** (-0.4 * (row["mag"] - cfg["zeropoint_ab"]))
        row["knot_fraction"] = float(rng.uniform(0.0, cfg["knots"]["max_fraction"]))
        knot_seed, noise_seed = (int(s) for s in rng.integers(1, 2**31 - 1, size=2))
        return row, knot_seed, noise_seed

    def render(self, galaxy_id: int, seed: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        r"""Draw catalog row, observed image and truth of one galaxy (all from its own seeds).

        Returns:
            ``(row, image, truth)``; images (H, W) float32 in counts.
        """

        row, knot_seed, noise_seed = self.parameters(galaxy_id, seed)
        observed, truth = self.draw(row, knot_seed)
        image = (observed + self.noise_field(noise_seed)).astype(np.float32)
        del row["knot_fraction"]
        return row, image, truth.astype(np.float32)

    def draw(self, row: dict[str, float], knot_seed: int) -> tuple[np.ndarray, np.ndarray]:
        r"""Noiseless observed image (galaxy ⊛ PSF ⊛ pixel, GalSim FFT) and truth (galaxy ⊛ pixel), counts."""

        smooth, knots, knot_flux = self.components(row, knot_seed)
        blob = self._knot.withFlux(knot_flux)
        gal = galsim.Add([smooth] + [blob.shift(float(x), float(y)) for x, y in knots])
        galsim.Convolve([gal, self.psf]).drawImage(self._obs, method="auto", use_true_center=False)
        ts = int(self.cfg["truth_oversample"])
        smooth.drawImage(self._fine, method="no_pixel", center=self._fine_center)
        truth = self._fine.array.reshape(self.n, ts, self.n, ts).sum(axis=(1, 3), dtype=np.float64)
        if len(knots):
            truth += self._knots_truth(knots, knot_flux)
        return self._obs.array.astype(np.float64), truth

    def noise_field(self, noise_seed: int) -> np.ndarray:
        r"""One COSMOS correlated-noise field (H, W) in counts: white noise filtered by sqrt(noise_power)."""

        white = np.random.default_rng(noise_seed).standard_normal((self.n, self.n))
        return np.fft.irfft2(np.fft.rfft2(white) * self._sqrt_power, s=(self.n, self.n))

    def render_many(self, ids: np.ndarray, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        r"""Render the galaxies ``ids``; returns (catalog columns, images (n, H, W), truth (n, H, W))."""

        rows, images, truths = [], [], []
        for i in ids:
            row, img, tru = self.render(int(i), seed)
            rows.append(row)
            images.append(img)
            truths.append(tru)
        cat = {k: np.array([r[k] for r in rows], np.float64) for k in CATALOG_COLUMNS}
        return cat, np.stack(images), np.stack(truths)


_WORKER: dict[str, Any] = {}


def _init_worker(cfg: dict[str, Any]) -> None:
    _WORKER["renderer"] = Renderer(cfg)


def _render_chunk(args: tuple[np.ndarray, int]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    ids, seed = args
    return _WORKER["renderer"].render_many(ids, seed)


def simulate(config: Mapping[str, Any], n_threads: int = 1) -> GalaxySet:
    r"""Simulate the galaxy set described by ``config["simulate"]`` with seed ``config["seed"]``.

    The result does not depend on ``n_threads``: every galaxy draws its parameters, knots and noise
    from ``item_seed(seed, id, "simulate")``.

    Arguments:
        config: ``{"simulate": ..., "seed": ...}`` from the validated config.
        n_threads: Worker processes.

    Returns:
        Galaxies (N, 1, H, W) in counts with ``truth``, a shared ``psf`` and ``noise_power``.
    """

    cfg = config["simulate"]
    seed = int(config["seed"])
    n_gal = int(cfg["n_galaxies"])
    ids = np.arange(n_gal, dtype=np.int64)
    chunks = [ids[i : i + int(cfg["chunk_size"])] for i in range(0, n_gal, int(cfg["chunk_size"]))]
    renderer = Renderer(cfg)
    log.info("simulating %d galaxies at %d x %d pixels on %d process(es)", n_gal, renderer.n, renderer.n, n_threads)

    bar = tqdm(total=n_gal, desc="simulate", unit="gal", mininterval=2.0)
    results = []
    if n_threads <= 1 or len(chunks) == 1:
        for chunk in chunks:
            results.append(renderer.render_many(chunk, seed))
            bar.update(len(chunk))
    else:
        # fork: workers inherit the imported modules; nothing re-imports the calling script.
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(n_threads, mp_context=ctx, initializer=_init_worker, initargs=(cfg,)) as pool:
            for res in pool.map(_render_chunk, [(c, seed) for c in chunks]):
                results.append(res)
                bar.update(len(res[1]))
    bar.close()

    catalog = {"id": ids}
    for key in CATALOG_COLUMNS:
        catalog[key] = np.concatenate([r[0][key] for r in results])
    n = renderer.n
    return GalaxySet(
        images=np.concatenate([r[1] for r in results])[:, None],
        psf=renderer.psf_stamp.astype(np.float32)[None, None],
        noise_sigma=np.full(n_gal, renderer.noise_sigma, np.float32),
        catalog=catalog,
        attrs={
            "pixel_scale_arcsec": renderer.scale,
            "band": str(cfg["band"]),
            "zeropoint_ab": float(cfg["zeropoint_ab"]),
            "source": "simulate",
            "seed": seed,
        },
        truth=np.concatenate([r[2] for r in results])[:, None],
        noise_power=renderer.noise_power[None, None, :, : n // 2 + 1].astype(np.float32),
    )


def run_simulate(*, raw: str | os.PathLike, config: Mapping[str, Any], threads: int = 1) -> None:
    r"""Rule ``simulate``: simulate the data set and write the galaxy file ``raw`` (contract layout, atomic write).

    Arguments:
        raw: Output galaxy file (``results/data/raw.h5``).
        config: ``{"simulate": ..., "seed": ...}`` from the validated config.
        threads: Worker processes (the result does not depend on it).
    """

    gs = simulate(config, threads)
    write_galaxies(raw, gs)
    log.info("wrote %d galaxies to %s", len(gs), raw)
