r"""The morphoflow data contract: one HDF5 layout that every stage reads and writes.

The layout is documented in ``docs/data-format.md``. In short, a galaxy file holds

* ``images``       (N, C, H, W) float32, observed pixels in counts (ADU), chunked per galaxy;
* ``psf``          (1 or N, C, H, W) float32, unit sum, centre at pixel (H // 2, W // 2);
* ``noise_sigma``  (N,) float32, per-pixel noise standard deviation in counts;
* ``noise_power``  optional (1 or N, C, H, W // 2 + 1) float32, noise power spectrum
  :math:`E|\mathrm{rfft2}(n)|^2 / (HW)` in counts² (white noise of std σ gives σ² everywhere);
* ``truth``        optional (N, C, H, W) float32, noiseless PSF-free image in counts;
* ``catalog/<col>`` 1-D datasets of length N, each with a ``unit`` attribute; ``catalog/id`` is int64;
* file attributes ``pixel_scale_arcsec``, ``band``, ``zeropoint_ab``, ``source``, ``format_version``.

Magnitudes follow ``mag = zeropoint_ab - 2.5 log10(sum of counts)``.
"""

from __future__ import annotations

__all__ = [
    "CATALOG_UNITS",
    "FORMAT_VERSION",
    "ContractError",
    "GalaxySet",
    "check_file",
    "open_h5",
    "read_catalog",
    "read_galaxies",
    "write_catalog",
    "write_galaxies",
]

import dataclasses
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .atomic import atomic_path

FORMAT_VERSION = 1

#: Units of the catalog columns the project knows; other columns need an explicit unit.
CATALOG_UNITS: dict[str, str] = {
    "id": "",
    "mag": "mag(AB)",
    "hlr_arcsec": "arcsec",
    "redshift": "",
    "sersic_n": "",
    "bulge_fraction": "",
    "q": "",
    "beta_rad": "rad",
    "flux": "counts",
    "flux_radius_arcsec": "arcsec",
    "x_pixel": "pixel",
    "y_pixel": "pixel",
    "seed": "",
}

REQUIRED_ATTRS: dict[str, type] = {
    "pixel_scale_arcsec": float,
    "band": str,
    "zeropoint_ab": float,
    "source": str,
    "format_version": int,
}


class ContractError(ValueError):
    r"""A file does not follow the data contract; the message names the file and dataset."""


@dataclasses.dataclass
class GalaxySet:
    r"""A set of galaxy stamps held in memory, in the units of the data contract.

    Attributes:
        images: Observed stamps (N, C, H, W) in counts.
        psf: PSF images (1 or N, C, H, W), unit sum, centred at (H // 2, W // 2).
        noise_sigma: Per-pixel noise standard deviation (N,) in counts.
        catalog: Columns of length N; must contain ``id`` (int64).
        attrs: File attributes (``pixel_scale_arcsec``, ``band``, ``zeropoint_ab``, ``source``, extras).
        units: Unit of each catalog column (defaults from :data:`CATALOG_UNITS`).
        truth: Optional noiseless PSF-free stamps (N, C, H, W) in counts.
        noise_power: Optional noise power spectra (1 or N, C, H, W // 2 + 1) in counts².
    """

    images: np.ndarray
    psf: np.ndarray
    noise_sigma: np.ndarray
    catalog: dict[str, np.ndarray]
    attrs: dict[str, Any]
    units: dict[str, str] = dataclasses.field(default_factory=dict)
    truth: np.ndarray | None = None
    noise_power: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def ids(self) -> np.ndarray:
        return self.catalog["id"]

    @property
    def pixel_scale(self) -> float:
        r"""Pixel scale in arcsec per pixel."""
        return float(self.attrs["pixel_scale_arcsec"])

    def psf_of(self, index: np.ndarray | slice) -> np.ndarray:
        r"""PSFs of the selected galaxies, broadcasting a shared PSF."""
        if len(self.psf) == 1:
            n = len(np.arange(len(self))[index])
            return np.broadcast_to(self.psf, (n, *self.psf.shape[1:]))
        return self.psf[index]

    def subset(self, index: np.ndarray | slice) -> GalaxySet:
        r"""Return the galaxies selected by ``index`` (a shared PSF or noise spectrum stays shared)."""

        def per(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            return a if len(a) == 1 and len(self) != 1 else a[index]

        return GalaxySet(
            images=self.images[index],
            psf=per(self.psf),
            noise_sigma=self.noise_sigma[index],
            catalog={k: v[index] for k, v in self.catalog.items()},
            attrs=dict(self.attrs),
            units=dict(self.units),
            truth=None if self.truth is None else self.truth[index],
            noise_power=per(self.noise_power),
        )

    def validate(self, name: str = "<memory>") -> None:
        r"""Raise :class:`ContractError` naming the first field that breaks the contract."""

        _check_arrays(
            name,
            images=self.images,
            psf=self.psf,
            noise_sigma=self.noise_sigma,
            truth=self.truth,
            noise_power=self.noise_power,
            catalog=self.catalog,
        )
        for key, kind in REQUIRED_ATTRS.items():
            if key == "format_version":
                continue
            if key not in self.attrs:
                raise ContractError(f"{name}: attribute '{key}' is missing")
            if kind is float and not np.isfinite(float(self.attrs[key])):
                raise ContractError(f"{name}: attribute '{key}' is not finite")


def _check_arrays(
    name: str,
    images: Any,
    psf: Any,
    noise_sigma: Any,
    truth: Any,
    noise_power: Any,
    catalog: dict[str, Any],
) -> None:
    if images.ndim != 4:
        raise ContractError(f"{name}: dataset 'images' must be (N, C, H, W), got shape {images.shape}")
    n, c, h, w = images.shape
    if n == 0:
        raise ContractError(f"{name}: dataset 'images' holds no galaxy")
    if psf.ndim != 4 or psf.shape[0] not in (1, n) or psf.shape[1:] != (c, h, w):
        raise ContractError(f"{name}: dataset 'psf' must be (1 or {n}, {c}, {h}, {w}), got shape {psf.shape}")
    if noise_sigma.shape != (n,):
        raise ContractError(f"{name}: dataset 'noise_sigma' must be ({n},), got shape {noise_sigma.shape}")
    if truth is not None and truth.shape != images.shape:
        raise ContractError(f"{name}: dataset 'truth' must be {images.shape}, got shape {truth.shape}")
    if noise_power is not None and (
        noise_power.ndim != 4 or noise_power.shape[0] not in (1, n) or noise_power.shape[1:] != (c, h, w // 2 + 1)
    ):
        raise ContractError(
            f"{name}: dataset 'noise_power' must be (1 or {n}, {c}, {h}, {w // 2 + 1}), got shape {noise_power.shape}"
        )
    if "id" not in catalog:
        raise ContractError(f"{name}: dataset 'catalog/id' is missing")
    for key, col in catalog.items():
        if col.shape != (n,):
            raise ContractError(f"{name}: dataset 'catalog/{key}' must be ({n},), got shape {col.shape}")
    if len(np.unique(np.asarray(catalog["id"]))) != n:
        raise ContractError(f"{name}: dataset 'catalog/id' has duplicate ids")


def write_catalog(
    group: h5py.Group,
    catalog: dict[str, np.ndarray],
    units: dict[str, str] | None = None,
) -> None:
    r"""Write catalog columns as 1-D datasets with a ``unit`` attribute into ``group``."""

    units = units or {}
    for key, col in catalog.items():
        unit = units.get(key, CATALOG_UNITS.get(key))
        if unit is None:
            raise ContractError(f"catalog column '{key}' has no unit: pass it in units")
        col = np.asarray(col)
        if key == "id":
            col = col.astype(np.int64)
        elif col.dtype.kind == "f":
            col = col.astype(np.float64)
        ds = group.create_dataset(key, data=col)
        ds.attrs["unit"] = unit


def read_catalog(group: h5py.Group, name: str = "<file>") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    r"""Read the catalog group: returns (columns, units)."""

    catalog, units = {}, {}
    for key, ds in group.items():
        if "unit" not in ds.attrs:
            raise ContractError(f"{name}: dataset 'catalog/{key}' has no 'unit' attribute")
        catalog[key] = ds[()]
        units[key] = str(ds.attrs["unit"])
    return catalog, units


def write_galaxies(path: str | os.PathLike, gs: GalaxySet, *, compression: int = 1) -> None:
    r"""Validate ``gs`` and write it to ``path`` atomically in the contract layout.

    Arguments:
        path: Output file (``.h5``).
        gs: The galaxies.
        compression: gzip level of the image datasets (chunked one galaxy per chunk).
    """

    gs.validate(str(path))
    _n, c, h, w = gs.images.shape
    opts = dict(compression="gzip", compression_opts=compression, shuffle=True)

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=gs.images.astype(np.float32), chunks=(1, c, h, w), **opts)
        f.create_dataset("psf", data=gs.psf.astype(np.float32), chunks=(1, c, h, w), **opts)
        f.create_dataset("noise_sigma", data=gs.noise_sigma.astype(np.float32))
        if gs.truth is not None:
            f.create_dataset("truth", data=gs.truth.astype(np.float32), chunks=(1, c, h, w), **opts)
        if gs.noise_power is not None:
            f.create_dataset("noise_power", data=gs.noise_power.astype(np.float32), **opts)
        f["images"].attrs["unit"] = "counts"
        f["noise_sigma"].attrs["unit"] = "counts"
        f["psf"].attrs["unit"] = ""
        write_catalog(f.create_group("catalog"), gs.catalog, gs.units)
        for key, value in gs.attrs.items():
            f.attrs[key] = value
        f.attrs["format_version"] = FORMAT_VERSION


def open_h5(path: str | os.PathLike) -> h5py.File:
    r"""Open an HDF5 file for reading; a missing or unreadable file is a :class:`ContractError` naming it."""

    name = str(path)
    if not Path(path).exists():
        raise ContractError(f"{name}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ContractError(f"{name}: not a readable HDF5 file ({err})") from err


def check_file(path: str | os.PathLike) -> None:
    r"""Raise :class:`ContractError` if the file at ``path`` does not follow the contract."""

    read_galaxies(path, load_pixels=False)


def read_galaxies(path: str | os.PathLike, *, load_pixels: bool = True) -> GalaxySet:
    r"""Read and validate a contract file.

    Arguments:
        path: The ``.h5`` file.
        load_pixels: If false, only shapes, catalog and attributes are checked and the
            pixel arrays of the returned set are empty placeholders of the right shape.

    Raises:
        ContractError: naming the file and the missing or malformed dataset or attribute.
    """

    name = str(path)
    with open_h5(path) as f:
        for key in ("images", "psf", "noise_sigma", "catalog"):
            if key not in f:
                raise ContractError(f"{name}: dataset '{key}' is missing")
        for key, _kind in REQUIRED_ATTRS.items():
            if key not in f.attrs:
                raise ContractError(f"{name}: attribute '{key}' is missing")
        version = int(f.attrs["format_version"])
        if version != FORMAT_VERSION:
            raise ContractError(f"{name}: format_version {version} is not supported (expected {FORMAT_VERSION})")

        catalog, units = read_catalog(f["catalog"], name)
        opt = {k: f[k] for k in ("truth", "noise_power") if k in f}
        _check_arrays(
            name,
            images=f["images"],
            psf=f["psf"],
            noise_sigma=f["noise_sigma"],
            truth=opt.get("truth"),
            noise_power=opt.get("noise_power"),
            catalog=catalog,
        )

        def load(ds: h5py.Dataset | None) -> np.ndarray | None:
            if ds is None:
                return None
            if load_pixels:
                return ds[()].astype(np.float32)
            return np.empty((0, *ds.shape[1:]), np.float32)

        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        gs = GalaxySet(
            images=load(f["images"]),
            psf=load(f["psf"]),
            noise_sigma=f["noise_sigma"][()].astype(np.float32),
            catalog=catalog,
            attrs=attrs,
            units=units,
            truth=load(opt.get("truth")),
            noise_power=load(opt.get("noise_power")),
        )

    if load_pixels:
        for key in ("images", "psf", "truth", "noise_power"):
            arr = getattr(gs, key)
            if arr is not None and not np.isfinite(arr).all():
                raise ContractError(f"{name}: dataset '{key}' holds non-finite values")
    return gs
