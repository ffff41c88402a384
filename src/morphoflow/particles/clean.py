r"""Cleaning of star-particle galaxies as GalacticFlow does (Wolf & Buck 2023, ``processing.py``).

Per galaxy, in this order:

1. optional re-centring on the mass-weighted centre (shrinking spheres) and the mean velocity of the
   inner stars;
2. radius cut: keep stars within the ``percentile``-th percentile of the 3-D radius, capped at
   ``r_max_kpc``; if the cap applied (e.g. a satellite in the file), cut again at the
   ``percentile2``-th percentile of the remaining stars;
3. drop the ``drop_top_z`` stars of highest total metallicity Z (outliers);
4. keep ``[Fe/H] >= feh_min`` and ``[O/Fe] >= ofe_min`` (dex);
5. drop the galaxy if fewer than ``n_min`` stars remain;
6. align: rotate so the stellar angular momentum points along +z, then rotate in the x-y plane so the
   major axis (PCA of the positions of the inner ``pca_quantile`` of stars) lies along x.

The global parameters the flow is conditioned on are computed from the cleaned stars
(:func:`global_parameters`).
"""

from __future__ import annotations

__all__ = ["GLOBAL_UNITS", "align_galaxy", "clean_galaxy", "clean_stars", "global_parameters"]

from collections.abc import Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

from .io import StarSet
from .simulate import Z_SUN

#: Units of the global parameters (catalog columns) written by :func:`clean_stars`.
GLOBAL_UNITS: dict[str, str] = {
    "log_mstar": "log10(Msun)",
    "age_median_gyr": "Gyr",
    "age_p10_gyr": "Gyr",
    "log_mean_z": "log10(Z/Zsun)",
    "n_stars": "",
}


def _rotation_to_z(v: np.ndarray) -> np.ndarray:
    r"""Proper rotation matrix that maps the unit vector along ``v`` to +z."""
    v = v / np.linalg.norm(v)
    z = np.array([0.0, 0.0, 1.0])
    c = float(v @ z)
    if c > 1 - 1e-12:
        return np.eye(3)
    if c < -1 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    k = np.cross(v, z)
    s = np.linalg.norm(k)
    k = k / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def align_galaxy(stars: np.ndarray, columns: tuple[str, ...], pca_quantile: float) -> np.ndarray:
    r"""Rotate positions and velocities: angular momentum along +z, PCA major axis along +x."""

    ix, iv, im = columns.index("x"), columns.index("vx"), columns.index("mass")
    pos, vel, m = stars[:, ix : ix + 3], stars[:, iv : iv + 3], stars[:, im]
    ang = (m[:, None] * np.cross(pos, vel)).sum(0)
    rot = _rotation_to_z(ang) if np.linalg.norm(ang) > 0 else np.eye(3)
    pos, vel = pos @ rot.T, vel @ rot.T
    rad = np.hypot(pos[:, 0], pos[:, 1])
    inner = rad <= np.quantile(rad, pca_quantile)
    cov = np.cov(pos[inner, :2].T, aweights=m[inner])
    w, vec = np.linalg.eigh(cov)
    major = vec[:, np.argmax(w)]
    if major[0] < 0:
        major = -major
    ang2 = np.arctan2(major[1], major[0])
    c, s = np.cos(-ang2), np.sin(-ang2)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    out = stars.copy()
    out[:, ix : ix + 3] = pos @ rz.T
    out[:, iv : iv + 3] = vel @ rz.T
    return out


def _recenter(stars: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
    ix, iv, im = columns.index("x"), columns.index("vx"), columns.index("mass")
    pos, m = stars[:, ix : ix + 3], stars[:, im]
    centre = np.average(pos, axis=0, weights=m)
    radius = np.percentile(np.linalg.norm(pos - centre, axis=1), 90)
    for _ in range(20):  # shrinking spheres (Power et al. 2003)
        sel = np.linalg.norm(pos - centre, axis=1) <= radius
        if sel.sum() < 50:
            break
        centre = np.average(pos[sel], axis=0, weights=m[sel])
        radius *= 0.8
    sel = np.linalg.norm(pos - centre, axis=1) <= np.percentile(np.linalg.norm(pos - centre, axis=1), 50)
    vcen = np.average(stars[sel, iv : iv + 3], axis=0, weights=m[sel])
    out = stars.copy()
    out[:, ix : ix + 3] -= centre
    out[:, iv : iv + 3] -= vcen
    return out


def clean_galaxy(
    stars: np.ndarray, columns: tuple[str, ...], cfg: Mapping[str, Any]
) -> tuple[np.ndarray | None, dict[str, int]]:
    r"""Clean one galaxy (module docstring). Returns the kept stars (``None`` if the galaxy is dropped) and counts.

    Arguments:
        cfg: The ``particles.clean`` config section.
    """

    counts = {"stars_in": len(stars)}
    if cfg["recenter"]:
        stars = _recenter(stars, columns)
    ix = columns.index("x")
    r = np.linalg.norm(stars[:, ix : ix + 3], axis=1)
    r_cut = min(float(np.percentile(r, cfg["percentile"])), float(cfg["r_max_kpc"]))
    keep = r <= r_cut
    capped = r_cut == float(cfg["r_max_kpc"])
    if capped and keep.any():
        keep &= r <= np.percentile(r[keep], cfg["percentile2"])
    counts["removed_radius"] = int((~keep).sum())
    counts["radius_capped"] = int(capped)

    iz = columns.index("Z")
    k = min(int(cfg["drop_top_z"]), int(keep.sum()))
    if k > 0:
        kept_idx = np.flatnonzero(keep)
        top = kept_idx[np.argsort(stars[kept_idx, iz])[-k:]]
        keep[top] = False
    counts["removed_top_z"] = k

    for col, key in (("feh", "feh_min"), ("ofe", "ofe_min")):
        bad = keep & (stars[:, columns.index(col)] < cfg[key])
        keep &= ~bad
        counts[f"removed_{col}"] = int(bad.sum())

    stars = stars[keep]
    counts["stars_out"] = len(stars)
    if len(stars) < int(cfg["n_min"]) or len(stars) < 3:
        counts["stars_out"] = 0
        return None, counts
    return align_galaxy(stars, columns, cfg["pca_quantile"]), counts


def global_parameters(stars: np.ndarray, columns: tuple[str, ...]) -> dict[str, float]:
    r"""The global parameters of a galaxy (units in :data:`GLOBAL_UNITS`).

    ``log_mstar``: log10 of the total stellar mass (Msun); ``age_median_gyr`` and ``age_p10_gyr``: the
    median and 10th percentile of the stellar ages (Gyr); ``log_mean_z``: log10 of the mass-weighted mean
    total metallicity over :data:`~morphoflow.particles.simulate.Z_SUN`; ``n_stars``.
    """

    m = stars[:, columns.index("mass")]
    age = stars[:, columns.index("age")]
    return {
        "log_mstar": float(np.log10(m.sum())),
        "age_median_gyr": float(np.median(age)),
        "age_p10_gyr": float(np.percentile(age, 10)),
        "log_mean_z": float(np.log10(np.average(stars[:, columns.index("Z")], weights=m) / Z_SUN)),
        "n_stars": float(len(stars)),
    }


def clean_stars(ss: StarSet, cfg: Mapping[str, Any]) -> tuple[StarSet, dict[str, Any]]:
    r"""Clean every galaxy; add the global parameters to the catalog.

    Arguments:
        cfg: The ``particles.clean`` config section.

    Returns:
        The cleaned set (dropped galaxies removed) and a report of counts (JSON-serialisable).
    """

    galaxies, rows, totals = [], [], {}
    glob: dict[str, list[float]] = {k: [] for k in GLOBAL_UNITS}
    for g in tqdm(range(len(ss)), desc="clean particles", unit="galaxy", leave=False):
        out, counts = clean_galaxy(ss.galaxy(g), ss.columns, cfg)
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        if out is None:
            continue
        galaxies.append(out)
        rows.append(g)
        for key, value in global_parameters(out, ss.columns).items():
            glob[key].append(value)
    rows_a = np.asarray(rows, dtype=np.int64)
    catalog = {k: np.asarray(v)[rows_a] for k, v in ss.catalog.items() if k not in GLOBAL_UNITS}
    units = {k: ss.units.get(k, "") for k in catalog}
    for key, values in glob.items():
        catalog[key] = np.asarray(values, np.float64)
        units[key] = GLOBAL_UNITS[key]
    report = {
        "galaxies_in": len(ss),
        "galaxies_out": len(galaxies),
        "galaxies_removed_n_min": len(ss) - len(galaxies),
        **totals,
        "config": dict(cfg),
    }
    cleaned = StarSet.from_list(galaxies, catalog, units, ss.columns, dict(ss.attrs))
    return cleaned, report
