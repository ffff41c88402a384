r"""Star-particle files: GalacticFlow's per-galaxy ``.npy`` files and our ragged HDF5 layout.

GalacticFlow (luwo9/GalacticFlow, ``processing.py``) stores one NIHAO galaxy per ``.npy`` file as a plain
float array of shape (11, N) (``np.load(f).T`` gives one star per row) with columns
``x, y, z`` (kpc), ``vx, vy, vz`` (km/s), ``Z`` (total metal mass fraction), ``feh``, ``ofe`` (dex),
``mass`` (Msun), ``age`` (Gyr); the file name ends with the dark-matter mass, ``..._<M_dm>.npy``.

Our star file (``results/particles/stars.h5``, see ``docs/particles.md``) is ragged: one ``stars``
dataset (sum N_i, 11) float32 holding every galaxy's stars one after the other, ``offsets`` (G + 1,)
int64 so galaxy ``g`` owns rows ``offsets[g]:offsets[g + 1]``, and a ``catalog/<col>`` group (G rows,
``catalog/id`` int64, with units) as in the image data contract.
"""

from __future__ import annotations

__all__ = [
    "NPY_COLUMNS",
    "STAR_COLUMNS",
    "STAR_UNITS",
    "StarSet",
    "read_npy_folder",
    "read_npy_galaxy",
    "read_stars",
    "write_npy_galaxy",
    "write_stars",
]

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import atomic_path
from ..contract import ContractError, open_h5, read_catalog, write_catalog

#: Columns of a GalacticFlow ``.npy`` file, in order.
NPY_COLUMNS: tuple[str, ...] = ("x", "y", "z", "vx", "vy", "vz", "Z", "feh", "ofe", "mass", "age")

#: The per-star features the flow learns (``mass`` is dropped, as in GalacticFlow).
STAR_COLUMNS: tuple[str, ...] = ("x", "y", "z", "vx", "vy", "vz", "Z", "feh", "ofe", "age")

STAR_UNITS: dict[str, str] = {
    "x": "kpc", "y": "kpc", "z": "kpc",
    "vx": "km/s", "vy": "km/s", "vz": "km/s",
    "Z": "", "feh": "dex", "ofe": "dex", "mass": "Msun", "age": "Gyr",
}  # fmt: skip

STARS_VERSION = 1


@dataclasses.dataclass
class StarSet:
    r"""The star particles of G galaxies, ragged.

    Attributes:
        stars: (sum N_i, len(columns)) float array, galaxies one after the other.
        offsets: (G + 1,) int64; galaxy ``g`` owns ``stars[offsets[g]:offsets[g + 1]]``.
        catalog: G-row columns; must contain ``id`` (int64).
        units: Unit of each catalog column.
        columns: Names of the star columns (default :data:`NPY_COLUMNS`).
        attrs: File attributes (``source``, ...).
    """

    stars: np.ndarray
    offsets: np.ndarray
    catalog: dict[str, np.ndarray]
    units: dict[str, str] = dataclasses.field(default_factory=dict)
    columns: tuple[str, ...] = NPY_COLUMNS
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def ids(self) -> np.ndarray:
        return self.catalog["id"]

    @property
    def counts(self) -> np.ndarray:
        r"""Number of stars of each galaxy."""
        return np.diff(self.offsets)

    def galaxy(self, g: int) -> np.ndarray:
        r"""Stars of the ``g``-th galaxy (a view)."""
        return self.stars[self.offsets[g] : self.offsets[g + 1]]

    def col(self, name: str) -> int:
        r"""Index of the star column ``name``."""
        return self.columns.index(name)

    @classmethod
    def from_list(
        cls,
        galaxies: list[np.ndarray],
        catalog: dict[str, np.ndarray],
        units: dict[str, str] | None = None,
        columns: tuple[str, ...] = NPY_COLUMNS,
        attrs: dict[str, Any] | None = None,
    ) -> StarSet:
        r"""Build a set from one (N_i, C) array per galaxy."""
        counts = np.array([len(g) for g in galaxies], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        stars = np.concatenate(galaxies, axis=0) if galaxies else np.zeros((0, len(columns)))
        return cls(stars, offsets, dict(catalog), dict(units or {}), tuple(columns), dict(attrs or {}))

    def validate(self, name: str = "<memory>") -> None:
        r"""Raise :class:`ContractError` naming the field that is malformed."""
        if self.stars.ndim != 2 or self.stars.shape[1] != len(self.columns):
            raise ContractError(f"{name}: dataset 'stars' must be (N, {len(self.columns)}), got {self.stars.shape}")
        off = np.asarray(self.offsets)
        if off.ndim != 1 or len(off) < 2 or off[0] != 0 or off[-1] != len(self.stars) or (np.diff(off) < 0).any():
            raise ContractError(f"{name}: dataset 'offsets' must rise from 0 to {len(self.stars)}")
        if "id" not in self.catalog:
            raise ContractError(f"{name}: dataset 'catalog/id' is missing")
        for key, col in self.catalog.items():
            if np.shape(col) != (len(self),):
                raise ContractError(f"{name}: dataset 'catalog/{key}' must be ({len(self)},), got {np.shape(col)}")
        if len(np.unique(self.catalog["id"])) != len(self):
            raise ContractError(f"{name}: dataset 'catalog/id' has duplicate ids")
        if not np.isfinite(self.stars).all():
            raise ContractError(f"{name}: dataset 'stars' holds non-finite values")


def _dm_mass_from_name(path: Path) -> float:
    m = re.search(r"_([0-9.eE+-]+)$", path.stem)
    if m is None:
        return float("nan")
    try:
        return float(m.group(1))
    except ValueError:
        return float("nan")


def read_npy_galaxy(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    r"""Read one GalacticFlow galaxy file.

    Accepts the (11, N) layout GalacticFlow writes, a plain (N, 11) array, or a structured array
    with fields :data:`NPY_COLUMNS`. A square (11, 11) array is read as GalacticFlow's (11, N).

    Returns:
        The stars, (N, 11) float64 in the column order of :data:`NPY_COLUMNS`, and the dark-matter
        mass (Msun) parsed from the file name (NaN when the name carries none).
    """

    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ContractError(f"{path}: not a readable .npy array ({err})") from err
    if arr.dtype.names is not None:
        missing = [c for c in NPY_COLUMNS if c not in arr.dtype.names]
        if missing:
            raise ContractError(f"{path}: structured array lacks field(s) {missing}; expected {list(NPY_COLUMNS)}")
        data = np.stack([np.asarray(arr[c], np.float64).ravel() for c in NPY_COLUMNS], axis=1)
    elif arr.ndim == 2 and arr.shape[0] == len(NPY_COLUMNS):
        data = arr.T.astype(np.float64)
    elif arr.ndim == 2 and arr.shape[1] == len(NPY_COLUMNS):
        data = arr.astype(np.float64)
    else:
        raise ContractError(
            f"{path}: expected an (11, N) or (N, 11) array with columns {list(NPY_COLUMNS)}, got shape {arr.shape}"
        )
    if len(data) == 0:
        raise ContractError(f"{path}: holds no star")
    if not np.isfinite(data).all():
        raise ContractError(f"{path}: holds non-finite values")
    return data, _dm_mass_from_name(path)


def write_npy_galaxy(path: str | os.PathLike, stars: np.ndarray) -> None:
    r"""Write (N, 11) stars as GalacticFlow does: a float64 array of shape (11, N), atomically."""

    stars = np.asarray(stars, np.float64)
    if stars.ndim != 2 or stars.shape[1] != len(NPY_COLUMNS):
        raise ValueError(f"stars must be (N, {len(NPY_COLUMNS)}), got {stars.shape}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(stars.T))


def read_npy_folder(folder: str | os.PathLike, first_id: int = 0) -> StarSet:
    r"""Read every ``*.npy`` galaxy of a folder (sorted by name) into a :class:`StarSet`.

    Galaxy ids are ``first_id + rank`` in name order; the catalog keeps ``m_dm`` (Msun, from the
    file name) and ``n_stars``. The file names are stored in the attribute ``files``.
    """

    folder = Path(folder)
    if not folder.is_dir():
        raise ContractError(f"{folder}: particles.npy_folder is not a folder")
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise ContractError(f"{folder}: no .npy galaxy file found (config key particles.npy_folder)")
    galaxies, m_dm = [], []
    for f in files:
        stars, m = read_npy_galaxy(f)
        galaxies.append(stars)
        m_dm.append(m)
    catalog = {
        "id": np.arange(first_id, first_id + len(files), dtype=np.int64),
        "m_dm": np.asarray(m_dm, np.float64),
        "n_stars": np.array([len(g) for g in galaxies], np.float64),
    }
    units = {"id": "", "m_dm": "Msun", "n_stars": ""}
    return StarSet.from_list(galaxies, catalog, units, NPY_COLUMNS, {"source": "npy", "files": [f.name for f in files]})


def write_stars(path: str | os.PathLike, ss: StarSet) -> None:
    r"""Validate and write a :class:`StarSet` atomically (layout in the module docstring)."""

    ss.validate(str(path))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset(
            "stars", data=ss.stars.astype(np.float32), chunks=(min(max(len(ss.stars), 1), 65536), len(ss.columns)),
            compression="gzip", compression_opts=1, shuffle=True,
        )  # fmt: skip
        ds.attrs["columns"] = list(ss.columns)
        ds.attrs["units"] = [STAR_UNITS.get(c, "") for c in ss.columns]
        f.create_dataset("offsets", data=np.asarray(ss.offsets, np.int64))
        write_catalog(f.create_group("catalog"), ss.catalog, ss.units)
        for key, value in ss.attrs.items():
            f.attrs[key] = value
        f.attrs["stars_version"] = STARS_VERSION


def read_stars(path: str | os.PathLike) -> StarSet:
    r"""Read and validate a star file written by :func:`write_stars`.

    Raises:
        ContractError: naming the file and the missing or malformed dataset.
    """

    name = str(path)
    with open_h5(path) as f:
        for key in ("stars", "offsets", "catalog"):
            if key not in f:
                raise ContractError(f"{name}: dataset '{key}' is missing")
        if "columns" not in f["stars"].attrs:
            raise ContractError(f"{name}: dataset 'stars' has no 'columns' attribute")
        columns = tuple(str(c) for c in f["stars"].attrs["columns"])
        catalog, units = read_catalog(f["catalog"], name)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        attrs = {k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}
        ss = StarSet(f["stars"][()].astype(np.float64), f["offsets"][()], catalog, units, columns, attrs)
    ss.validate(name)
    return ss
