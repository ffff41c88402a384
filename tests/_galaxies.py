r"""Tiny contract files for the stage-1 tests: real GalSim galaxies, a Gaussian or Moffat PSF, white noise."""

from __future__ import annotations

__all__ = ["make_galaxies", "write_split"]

from pathlib import Path

import galsim
import numpy as np

from morphoflow.contract import GalaxySet, write_galaxies

PIXEL_SCALE = 0.1  # arcsec
ZEROPOINT = 25.94  # AB mag for 1 count


def make_galaxies(
    n: int = 32,
    size: int = 32,
    seed: int = 0,
    sigma: float = 1.0,
    psf_kind: str = "gaussian",
    id_offset: int = 0,
    per_galaxy_psf: bool = False,
) -> GalaxySet:
    r"""``n`` Sérsic galaxies (counts) convolved with a PSF (FWHM 0.25 arcsec) plus white noise of std ``sigma``."""

    rng = np.random.default_rng(seed)
    psf_prof = galsim.Gaussian(fwhm=0.25) if psf_kind == "gaussian" else galsim.Moffat(beta=3.0, fwhm=0.25)
    # PSF centre on pixel (H // 2, W // 2), as the contract says (not GalSim's true centre of an even stamp)
    psf_img = psf_prof.drawImage(nx=size, ny=size, scale=PIXEL_SCALE, method="no_pixel", use_true_center=False)
    psf_img = psf_img.array.astype(np.float32)
    psf_img /= psf_img.sum()

    images, truth, cat = [], [], {k: [] for k in ("id", "mag", "hlr_arcsec", "sersic_n", "redshift", "flux")}
    for i in range(n):
        flux = float(rng.uniform(300, 1500))
        hlr = float(rng.uniform(0.2, 0.45))
        n_s = float(rng.choice([1.0, 1.5, 2.5]))
        q = float(rng.uniform(0.4, 1.0))
        gal = galsim.Sersic(n=n_s, half_light_radius=hlr, flux=flux).shear(
            q=q, beta=rng.uniform(0, np.pi) * galsim.radians
        )
        t = gal.drawImage(nx=size, ny=size, scale=PIXEL_SCALE, method="no_pixel").array
        obs = galsim.Convolve(gal, psf_prof).drawImage(nx=size, ny=size, scale=PIXEL_SCALE, method="no_pixel").array
        obs = obs + rng.normal(0, sigma, obs.shape)
        images.append(obs[None])
        truth.append(t[None])
        cat["id"].append(id_offset + i)
        cat["mag"].append(ZEROPOINT - 2.5 * np.log10(flux))
        cat["hlr_arcsec"].append(hlr)
        cat["sersic_n"].append(n_s)
        cat["redshift"].append(float(rng.uniform(0.1, 1.5)))
        cat["flux"].append(flux)

    psf = psf_img[None, None]
    if per_galaxy_psf:
        psf = np.repeat(psf, n, axis=0)
    return GalaxySet(
        images=np.asarray(images, np.float32),
        psf=psf,
        noise_sigma=np.full(n, sigma, np.float32),
        catalog={k: np.asarray(v, np.int64 if k == "id" else np.float64) for k, v in cat.items()},
        attrs={
            "pixel_scale_arcsec": PIXEL_SCALE,
            "band": "F814W",
            "zeropoint_ab": ZEROPOINT,
            "source": "simulate",
            "norm_scale": float(sigma),
            "norm_method": "scale",
        },
        truth=np.asarray(truth, np.float32),
    )


def write_split(folder: str | Path, n: int = 32, size: int = 32, seed: int = 0, **kw) -> dict[str, Path]:
    r"""Write ``train.h5``, ``val.h5`` and ``test.h5`` (``n``, ``n // 2``, ``n // 2`` galaxies) under ``folder``."""

    folder = Path(folder)
    out = {}
    sizes = {"train": n, "val": max(n // 2, 4), "test": max(n // 2, 4)}
    offset = 0
    for k, (split, m) in enumerate(sizes.items()):
        path = folder / f"{split}.h5"
        write_galaxies(path, make_galaxies(m, size, seed + k, id_offset=offset, **kw))
        offset += m
        out[split] = path
    return out
