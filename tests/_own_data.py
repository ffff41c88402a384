r"""Input files of the three "your own data" sources, drawn with GalSim, for tests and docs examples.

* :func:`ground_galaxies`: Sérsic galaxies seen from the ground, a Moffat PSF (FWHM 0.7", β 3.5) at
  0.2"/pixel with white noise, as a :class:`GalaxySet` (write it with ``write_galaxies``: ``data.source: file``);
* :func:`write_fits_source`: the same galaxies as a FITS cube (N, H, W), an ECSV catalog with units
  (size in pixels) and one PSF image per galaxy, noise σ in a header keyword (``data.source: fits``);
* :func:`write_realgalaxy_source`: a GalSim ``RealGalaxyCatalog`` (catalog, galaxy, PSF and noise files)
  without the ``_fits`` parametric catalog that ``COSMOSCatalog`` needs (``data.source: realgalaxy``).
"""

from __future__ import annotations

__all__ = ["ground_galaxies", "write_fits_source", "write_realgalaxy_source"]

from pathlib import Path

import astropy.units as u
import galsim
import numpy as np
from astropy.io import fits
from astropy.table import Table

from _cosmos_fixture import make_cosmos_sample
from morphoflow.contract import GalaxySet

SCALE = 0.2  # arcsec / pixel, a ground-based camera
ZEROPOINT = 30.0  # AB mag of 1 count
SIGMA = 2.0  # counts, per-pixel noise


def ground_galaxies(n: int = 60, size: int = 32, seed: int = 3) -> GalaxySet:
    r"""``n`` Sérsic galaxies (counts) ⊗ Moffat(FWHM 0.7", β 3.5) at 0.2"/pixel plus white noise σ = 2 counts."""

    rng = np.random.default_rng(seed)
    psf = galsim.Moffat(beta=3.5, fwhm=0.7)
    opts = dict(nx=size, ny=size, scale=SCALE, use_true_center=False)
    psf_img = psf.drawImage(method="no_pixel", **opts).array
    images, cat = [], {k: [] for k in ("id", "mag", "hlr_arcsec", "redshift")}
    for i in range(n):
        flux = float(10 ** rng.uniform(3.0, 3.6))
        hlr = float(rng.uniform(0.4, 1.0))
        gal = galsim.Sersic(n=float(rng.choice([1.0, 2.0])), half_light_radius=hlr, flux=flux)
        gal = gal.shear(q=float(rng.uniform(0.4, 1.0)), beta=rng.uniform(0, np.pi) * galsim.radians)
        obs = galsim.Convolve(gal, psf).drawImage(**opts).array
        images.append(obs + rng.normal(0, SIGMA, obs.shape))
        cat["id"].append(5000 + 3 * i)
        cat["mag"].append(ZEROPOINT - 2.5 * np.log10(flux))
        cat["hlr_arcsec"].append(hlr)
        cat["redshift"].append(float(rng.uniform(0.1, 1.2)))
    return GalaxySet(
        images=np.asarray(images, np.float32)[:, None],
        psf=(psf_img / psf_img.sum()).astype(np.float32)[None, None],
        noise_sigma=np.full(n, SIGMA, np.float32),
        catalog={k: np.asarray(v, np.int64 if k == "id" else np.float64) for k, v in cat.items()},
        attrs={"pixel_scale_arcsec": SCALE, "band": "r", "zeropoint_ab": ZEROPOINT, "source": "ground-survey"},
    )


def write_fits_source(folder: Path, gs: GalaxySet) -> dict[str, Path]:
    r"""Write ``gs`` as stamps.fits (cube, header PIXSCALE / MAGZP / FILTER / SKYSIG), catalog.ecsv, psf.fits."""

    folder.mkdir(parents=True, exist_ok=True)
    header = fits.Header({"PIXSCALE": gs.pixel_scale, "MAGZP": gs.attrs["zeropoint_ab"], "FILTER": "r"})
    header["SKYSIG"] = float(gs.noise_sigma[0])
    paths = {k: folder / f for k, f in (("images", "stamps.fits"), ("catalog", "catalog.ecsv"), ("psf", "psf.fits"))}
    fits.PrimaryHDU(gs.images[:, 0], header=header).writeto(paths["images"], overwrite=True)
    # one PSF per galaxy, larger than the stamp (cropped by the reader)
    big = galsim.Moffat(beta=3.5, fwhm=0.7).drawImage(nx=41, ny=41, scale=gs.pixel_scale, method="no_pixel")
    fits.PrimaryHDU(np.repeat(big.array[None], len(gs), axis=0).astype(np.float32)).writeto(paths["psf"])
    table = Table(
        {
            "objid": gs.ids,
            "mag_r": gs.catalog["mag"] * u.mag,
            "r50": gs.catalog["hlr_arcsec"] / gs.pixel_scale * u.pix,
            "zphot": gs.catalog["redshift"],
        }
    )
    table.write(paths["catalog"], overwrite=True)
    return paths


def write_realgalaxy_source(folder: Path, n: int = 60) -> Path:
    r"""A GalSim RealGalaxyCatalog of ``n`` galaxies (HST-like, 0.03"/pixel) with HLR and ZPHOT columns, no ``_fits``.

    Returns:
        The catalog file.
    """

    root = make_cosmos_sample(folder, n=n, sample="rg")
    param = fits.getdata(root / "real_galaxy_catalog_rg_fits.fits")
    cat = root / "real_galaxy_catalog_rg.fits"
    table = Table(fits.getdata(cat, 1))
    table["HLR"] = np.asarray(param["flux_radius"]) * 0.03  # arcsec
    table["ZPHOT"] = np.asarray(param["zphot"])
    table.write(cat, overwrite=True)
    for extra in ("_fits", "_selection"):  # the tables only COSMOSCatalog reads
        (root / f"real_galaxy_catalog_rg{extra}.fits").unlink()
    return cat
