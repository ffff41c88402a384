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
    "WRITERS",
    "ContractError",
    "GalaxySet",
    "check_file",
    "check_galaxies",
    "load_dataset",
    "open_h5",
    "read_catalog",
    "read_galaxies",
    "reading",
    "rerun_advice",
    "write_catalog",
    "write_galaxies",
]

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


#: The rule that writes each contract file of the DAG (by file name), for "rerun it" advice.
WRITERS: dict[str, str] = {
    "raw.h5": "",  # simulate, cosmos or cut_stamps, by data.source: forcerun the file itself
    "train.h5": "preprocess",
    "val.h5": "preprocess",
    "test.h5": "preprocess",
    "floors.h5": "simulation_floors",
}
#: Latent files (``latents/<split>.h5``) and sample files are written by these rules (by parent folder).
WRITER_FOLDERS: dict[str, str] = {"latents": "extract_latents", "samples": "sample"}


class ContractError(ValueError):
    r"""A file does not follow the data contract; the message names the file and dataset."""


def rerun_advice(path: str | os.PathLike) -> str:
    r"""How to write ``path`` again: ``snakemake --forcerun <rule>`` for a DAG output (:data:`WRITERS`)."""

    p = Path(path)
    rule = WRITER_FOLDERS.get(p.parent.name, WRITERS.get(p.name))
    if rule is None:
        return "write it again"
    return f"rerun the rule that wrote it: snakemake --forcerun {rule or p}"


@contextmanager
def reading(path: str | os.PathLike, dataset: str) -> Iterator[None]:
    r"""Turn a low-level read error (h5py ``OSError``, e.g. a corrupted chunk) into a :class:`ContractError`.

    The message names the file and the dataset, and says which rule to rerun when the file is a DAG output.
    """

    try:
        yield
    except (OSError, RuntimeError) as err:
        raise ContractError(
            f"{path}: dataset '{dataset}' cannot be read, the file is damaged ({err}); {rerun_advice(path)}"
        ) from err


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

    def validate(self, name: str = "<memory>", *, raw: bool = False) -> None:
        r"""Raise :class:`ContractError` naming the first field that breaks the contract (:func:`check_galaxies`)."""

        check_galaxies(self, name, raw=raw)


def check_galaxies(gs: GalaxySet, name: str = "<memory>", *, raw: bool = False) -> None:
    r"""The one validation of a galaxy set, shared by :func:`write_galaxies` and :func:`read_galaxies`.

    Checks shapes, catalog ids, required attributes and that every value is finite (images, psf, truth,
    noise_power, noise_sigma and every numeric catalog column): the writer refuses what the reader refuses.

    Arguments:
        gs: The galaxies.
        name: File name for messages.
        raw: A raw file (``data/raw.h5``, the input of ``preprocess``) may hold non-finite values, which
            preprocess's cleaning removes galaxy by galaxy; only the layout is checked then.

    Raises:
        ContractError: naming the file and the first offending dataset or attribute.
    """

    _check_arrays(
        name,
        images=gs.images,
        psf=gs.psf,
        noise_sigma=gs.noise_sigma,
        truth=gs.truth,
        noise_power=gs.noise_power,
        catalog=gs.catalog,
    )
    for key, kind in REQUIRED_ATTRS.items():
        if key == "format_version":
            continue
        if key not in gs.attrs:
            raise ContractError(f"{name}: attribute '{key}' is missing")
        if kind is float and not np.isfinite(float(gs.attrs[key])):
            raise ContractError(f"{name}: attribute '{key}' is not finite")
    if not raw:
        _check_finite(gs, name)


def _check_finite(gs: GalaxySet, name: str) -> None:
    r"""Raise :class:`ContractError` naming the first dataset (and galaxy) with a non-finite value."""

    fields = {k: getattr(gs, k) for k in ("images", "psf", "truth", "noise_power", "noise_sigma")}
    fields.update({f"catalog/{k}": v for k, v in gs.catalog.items() if np.asarray(v).dtype.kind in "fc"})
    for key, arr in fields.items():
        if arr is None or arr.size == 0:
            continue
        bad = ~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)
        if bad.any():
            raise ContractError(
                f"{name}: dataset '{key}' holds non-finite values ({int(bad.sum())} of {len(arr)} entries, "
                f"first at index {int(np.flatnonzero(bad)[0])})"
            )


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
        with reading(name, f"catalog/{key}"):
            catalog[key] = ds[()]
        units[key] = str(ds.attrs["unit"])
    return catalog, units


def write_galaxies(path: str | os.PathLike, gs: GalaxySet, *, compression: int = 1, raw: bool = False) -> None:
    r"""Validate ``gs`` (:func:`check_galaxies`) and write it to ``path`` atomically in the contract layout.

    Arguments:
        path: Output file (``.h5``).
        gs: The galaxies.
        compression: gzip level of the image datasets (chunked one galaxy per chunk).
        raw: Write a raw file (input of ``preprocess``), which may hold non-finite values.

    Raises:
        ContractError: ``gs`` breaks the contract (nothing is written).
    """

    check_galaxies(gs, str(path), raw=raw)
    _n, c, h, w = gs.images.shape
    opts = dict(compression="gzip", compression_opts=compression, shuffle=True)

    arrays = (gs.images, gs.psf, gs.truth, gs.noise_power, gs.noise_sigma, *gs.catalog.values())
    size = sum(np.asarray(a).size * 8 for a in arrays if a is not None) // 2 + 2**16  # float32 pixels, headers
    with atomic_path(path, size=size) as tmp, h5py.File(tmp, "w") as f:
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

        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        gs = GalaxySet(
            images=load_dataset(f, "images", name, load_pixels),
            psf=load_dataset(f, "psf", name, load_pixels),
            noise_sigma=load_dataset(f, "noise_sigma", name),
            catalog=catalog,
            attrs=attrs,
            units=units,
            truth=load_dataset(f, "truth", name, load_pixels),
            noise_power=load_dataset(f, "noise_power", name, load_pixels),
        )

    if load_pixels:
        _check_finite(gs, name)
    return gs


def load_dataset(f: h5py.File, key: str, name: str, load: bool = True) -> np.ndarray | None:
    r"""Dataset ``key`` of the open file ``f`` as float32 (None if absent; an empty placeholder of the right
    trailing shape if not ``load``); a damaged dataset is a :class:`ContractError` naming ``name`` and ``key``."""

    if key not in f:
        return None
    ds = f[key]
    if not load:
        return np.empty((0, *ds.shape[1:]), np.float32)
    with reading(name, key):
        return ds[()].astype(np.float32)
