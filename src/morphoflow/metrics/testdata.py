r"""Small GalSim-rendered galaxy sets in the contract layout, for tests and benchmarks of the metrics.

Galaxies are a Sérsic bulge plus an exponential disk with 1-4 star-forming clumps (small
off-centre Gaussians), sheared and shifted, convolved with a Gaussian PSF, with white noise.
Everything is drawn from per-galaxy seeds (:func:`morphoflow.seeding.item_rng`).
"""

from __future__ import annotations

__all__ = ["render_galaxies"]

import galsim
import numpy as np

from ..contract import GalaxySet
from ..seeding import item_rng


def render_galaxies(
    n: int,
    *,
    size: int = 64,
    pixel_scale: float = 0.07,
    seed: int = 0,
    noise_sigma: float = 5.0,
    log10_flux: tuple[float, float] = (4.0, 5.0),
    hlr_arcsec: tuple[float, float] = (0.15, 0.6),
    knot_fraction: tuple[float, float] = (0.0, 0.6),
    psf_fwhm_arcsec: float = 0.15,
    zeropoint_ab: float = 25.0,
    first_id: int = 0,
) -> GalaxySet:
    r"""Render ``n`` galaxies (stamps ``size`` x ``size`` pixels of ``pixel_scale`` arcsec) in counts.

    The catalog holds the requested ``mag`` (AB, from the flux), ``hlr_arcsec`` (of the disk),
    ``flux`` (counts) and ``id``; ``truth`` holds the noiseless PSF-free images.
    """
    psf = galsim.Gaussian(fwhm=psf_fwhm_arcsec)
    images = np.zeros((n, 1, size, size), np.float32)
    truth = np.zeros_like(images)
    cat = {k: np.zeros(n) for k in ("mag", "hlr_arcsec", "flux")}
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    for i, gid in enumerate(ids):
        rng = item_rng(seed, int(gid), "testdata")
        hlr = rng.uniform(*hlr_arcsec)
        flux = 10 ** rng.uniform(*log10_flux)
        bulge = galsim.Sersic(n=rng.uniform(0.8, 4.0), half_light_radius=0.6 * hlr)
        disk = galsim.Exponential(half_light_radius=hlr)
        kf = rng.uniform(*knot_fraction)
        bf = rng.uniform(0.1, 0.9)
        gal = bf * bulge + (1 - bf) * (1 - kf) * disk
        if kf > 0:  # star-forming clumps: small Gaussians off centre (asymmetry, clumpiness)
            nclump = int(rng.integers(1, 5))
            for _ in range(nclump):
                r, phi = hlr * rng.uniform(0.3, 1.5), rng.uniform(0, 2 * np.pi)
                clump = galsim.Gaussian(sigma=rng.uniform(0.02, 0.06), flux=(1 - bf) * kf / nclump)
                gal = gal + clump.shift(r * np.cos(phi), r * np.sin(phi))
        gal = gal.shear(q=rng.uniform(0.3, 1.0), beta=rng.uniform(0, np.pi) * galsim.radians)
        gal = gal.withFlux(flux).shift(*rng.uniform(-0.1, 0.1, 2))
        truth[i, 0] = gal.drawImage(nx=size, ny=size, scale=pixel_scale, method="no_pixel").array
        img = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=pixel_scale).array
        images[i, 0] = img + rng.normal(0.0, noise_sigma, img.shape)
        cat["mag"][i] = zeropoint_ab - 2.5 * np.log10(flux)
        cat["hlr_arcsec"][i] = hlr
        cat["flux"][i] = flux
    psf_img = psf.drawImage(nx=size, ny=size, scale=pixel_scale).array
    psf_img = (psf_img / psf_img.sum()).astype(np.float32)[None, None]
    return GalaxySet(
        images=images,
        psf=psf_img,
        noise_sigma=np.full(n, noise_sigma, np.float32),
        catalog={"id": ids, **cat},
        attrs={
            "pixel_scale_arcsec": float(pixel_scale),
            "band": "F814W",
            "zeropoint_ab": float(zeropoint_ab),
            "source": "simulate",
        },
        truth=truth,
    )
