r"""Analytic star-particle galaxies: exponential disk + Hernquist spheroid, a stand-in for NIHAO.

Every galaxy is drawn from its own generator ``item_rng(seed, id, "particles.simulate")``, so a galaxy
does not depend on how many others are drawn or in which order. The model (all scalings are toy
relations chosen to span realistic ranges, documented in ``docs/particles.md``):

* stellar mass :math:`\log_{10} M_\star` uniform in ``log_mstar_range`` (Msun); equal-mass particles;
  the number of particles rises linearly in :math:`\log M_\star` from ``n_stars_range[0]`` to ``[1]``;
* bulge-to-total :math:`B/T = 0.1 + 0.25 (\log M_\star - 9) + \mathcal{N}(0, 0.1)`, clipped to [0.02, 0.8];
* disk: exponential surface density with scale length
  :math:`R_d = 3\,\mathrm{kpc}\,(M_\star / 10^{10})^{0.3}` (0.1 dex scatter; size-mass relation, Shen et al. 2003),
  an oval in-plane axis ratio in [0.75, 1], a sech² vertical profile whose height grows with age,
  :math:`h_z = 0.08 R_d (0.5 + \mathrm{age} / 6\,\mathrm{Gyr})`;
* spheroid: Hernquist (1990) profile with :math:`a = 0.15 R_d`, isotropic Gaussian velocities of
  dispersion :math:`0.55 v_\mathrm{max}`;
* rotation curve :math:`v_c(R) = v_\mathrm{max} \frac{2}{\pi} \arctan(R / 0.4 R_d)`,
  :math:`\log_{10} v_\mathrm{max} = 2.2 + 0.27 (\log M_\star - 10)` (km/s, Tully-Fisher-like); disk stars
  get dispersions :math:`\sigma_R = 0.12 v_\mathrm{max} (0.1 + \mathrm{age}/10)^{1/3}`,
  :math:`\sigma_\phi = 0.7 \sigma_R`, :math:`\sigma_z = 0.6 \sigma_R` (age-velocity dispersion relation)
  and an asymmetric drift :math:`\sigma_R^2 / v_c`;
* ages from a delayed-τ star-formation history :math:`\mathrm{SFR}(t) \propto (t - t_0) e^{-(t - t_0)/\tau}`
  with :math:`\tau = 4\,\mathrm{Gyr}\,(M_\star / 10^{10})^{-0.3}` (downsizing), :math:`t_0 \in [0.5, 2.5]`
  Gyr, observed at 13.8 Gyr; spheroid stars form in a burst of width 0.8 Gyr after :math:`t_0`;
* :math:`[\mathrm{Fe/H}] = 0.1 + 0.3 (\log M_\star - 10) - 0.15 R / R_d - 0.04\,\mathrm{age} + \mathcal{N}(0, 0.1)`
  in the disk (gradient per scale length), spheroid 0.3 dex poorer with 0.25 dex scatter;
  :math:`[\mathrm{O/Fe}] = 0.05 + 0.3 / (1 + e^{-(\mathrm{age} - 8)})+ \mathcal{N}(0, 0.04)` (old stars are
  α-enhanced); total metallicity :math:`Z = 0.0134 \cdot 10^{[\mathrm{M/H}]}` with
  :math:`[\mathrm{M/H}] = [\mathrm{Fe/H}] + \log_{10}(0.638 \cdot 10^{[\mathrm{O/Fe}]} + 0.362)`
  (Salaris et al. 1993);
* a ``contamination`` fraction of stars from a distant satellite (30–60 kpc) and a few extreme metallicity
  outliers, so that cleaning has something to remove; finally a random 3-D orientation.
"""

from __future__ import annotations

__all__ = ["T_UNIVERSE_GYR", "Z_SUN", "simulate_galaxy", "simulate_stars"]

from collections.abc import Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

from ..seeding import item_rng
from .io import NPY_COLUMNS, StarSet

Z_SUN = 0.0134  # Asplund et al. (2009)
T_UNIVERSE_GYR = 13.8


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _delayed_tau_times(rng: np.random.Generator, n: int, tau: float, span: float) -> np.ndarray:
    r"""Times since formation (Gyr) from :math:`s e^{-s/\tau}` truncated at ``span``."""
    out = np.empty(0)
    while len(out) < n:
        s = rng.gamma(2.0, tau, size=2 * (n - len(out)) + 16)
        out = np.concatenate([out, s[s < span]])
    return out[:n]


def _galaxy_parameters(rng: np.random.Generator, cfg: Mapping[str, Any]) -> dict[str, Any]:
    r"""Draw the structural parameters of one galaxy and its numbers of disk, spheroid and satellite stars."""
    lo, hi = cfg["log_mstar_range"]
    logm = rng.uniform(lo, hi)
    frac = (logm - lo) / max(hi - lo, 1e-9)
    n = round(cfg["n_stars_range"][0] + frac * (cfg["n_stars_range"][1] - cfg["n_stars_range"][0]))
    p: dict[str, Any] = {"logm": logm, "n": n}
    p["bt"] = float(np.clip(0.1 + 0.25 * (logm - 9.0) + rng.normal(0, 0.1), 0.02, 0.8))
    p["rd"] = 3.0 * 10 ** (0.3 * (logm - 10.0) + rng.normal(0, 0.1))
    p["q_disk"] = rng.uniform(0.75, 1.0)
    p["vmax"] = 10 ** (2.2 + 0.27 * (logm - 10.0) + rng.normal(0, 0.03))
    p["tau"] = 4.0 * 10 ** (-0.3 * (logm - 10.0) + rng.normal(0, 0.1))
    t0 = rng.uniform(0.5, 2.5)
    p["span"] = T_UNIVERSE_GYR - t0
    p["feh0"] = 0.1 + 0.3 * (logm - 10.0) + rng.normal(0, 0.05)
    p["n_con"] = rng.binomial(n, cfg["contamination"]) if cfg["contamination"] > 0 else 0
    p["n_bulge"] = rng.binomial(n - p["n_con"], p["bt"])
    p["n_disk"] = n - p["n_con"] - p["n_bulge"]
    return p


def _disk(rng: np.random.Generator, p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    r"""Disk stars: exponential in R (Gamma(2) in R / R_d), sech² in z, rotation + dispersion.

    Returns positions (kpc), velocities (km/s), ages (Gyr) and [Fe/H] (dex)."""
    n_disk, rd, vmax, span = p["n_disk"], p["rd"], p["vmax"], p["span"]
    age_d = span - _delayed_tau_times(rng, n_disk, p["tau"], span)
    r_d = rng.gamma(2.0, rd, n_disk)
    phi = rng.uniform(0, 2 * np.pi, n_disk)
    hz = 0.08 * rd * (0.5 + age_d / 6.0)
    z_d = hz * np.arctanh(np.clip(2 * rng.uniform(size=n_disk) - 1, -0.999999, 0.999999))
    vc = vmax * 2 / np.pi * np.arctan(r_d / (0.4 * rd))
    sig_r = 0.12 * vmax * (0.1 + age_d / 10.0) ** (1 / 3)
    v_r = rng.normal(0, 1, n_disk) * sig_r
    v_phi = vc - sig_r**2 / np.maximum(vc, 1.0) + rng.normal(0, 1, n_disk) * 0.7 * sig_r
    v_z = rng.normal(0, 1, n_disk) * 0.6 * sig_r
    pos_d = np.stack([r_d * np.cos(phi), p["q_disk"] * r_d * np.sin(phi), z_d], 1)
    vel_d = np.stack([v_r * np.cos(phi) - v_phi * np.sin(phi), v_r * np.sin(phi) + v_phi * np.cos(phi), v_z], 1)
    feh_d = p["feh0"] - 0.15 * r_d / rd - 0.04 * age_d + rng.normal(0, 0.1, n_disk)
    return pos_d, vel_d, age_d, feh_d


def _spheroid(rng: np.random.Generator, p: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    r"""Spheroid stars: Hernquist radii, isotropic directions and velocities, an early burst.

    Returns positions (kpc), velocities (km/s), ages (Gyr) and [Fe/H] (dex)."""
    n_bulge, rd = p["n_bulge"], p["rd"]
    a = 0.15 * rd
    u = np.sqrt(rng.uniform(0, 0.98, n_bulge))
    r_b = a * u / (1 - u)
    dirs = rng.standard_normal((n_bulge, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pos_b = r_b[:, None] * dirs
    vel_b = rng.normal(0, 0.55 * p["vmax"], (n_bulge, 3))
    age_b = np.clip(p["span"] - np.abs(rng.normal(0, 0.8, n_bulge)), 0.5, T_UNIVERSE_GYR)
    feh_b = p["feh0"] - 0.3 - 0.15 * r_b / rd + rng.normal(0, 0.25, n_bulge)
    return pos_b, vel_b, age_b, feh_b


def _satellite(rng: np.random.Generator, n_con: int) -> tuple[np.ndarray, ...]:
    r"""Contamination: a distant satellite clump (old, metal-poor).

    Returns positions (kpc), velocities (km/s), ages (Gyr) and [Fe/H] (dex)."""
    centre = rng.standard_normal(3)
    centre = centre / np.linalg.norm(centre) * rng.uniform(30, 60)
    pos_c = centre + rng.normal(0, 1.5, (n_con, 3))
    vel_c = rng.normal(0, 30, (n_con, 3)) + rng.normal(0, 100, 3)
    age_c = rng.uniform(9, 13, n_con)
    feh_c = rng.normal(-1.5, 0.3, n_con)
    return pos_c, vel_c, age_c, feh_c


def simulate_galaxy(seed: int, galaxy_id: int, cfg: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, float]]:
    r"""Draw one galaxy.

    Arguments:
        cfg: The ``particles.simulate`` config section (``log_mstar_range``, ``n_stars_range``, ``contamination``).

    Returns:
        The stars, (N, 11) in :data:`~morphoflow.particles.io.NPY_COLUMNS` order and units (kpc, km/s,
        metal fraction, dex, dex, Msun, Gyr), and the galaxy's true structural parameters.
    """

    rng = item_rng(seed, galaxy_id, "particles.simulate")
    p = _galaxy_parameters(rng, cfg)
    n = p["n"]
    parts = [_disk(rng, p), _spheroid(rng, p), _satellite(rng, p["n_con"])]
    pos, vel, age, feh = (np.concatenate([part[k] for part in parts]) for k in range(4))
    ofe = 0.05 + 0.3 / (1 + np.exp(-(age - 8.0))) + rng.normal(0, 0.04, n)
    # A few metallicity outliers (numerical artefacts in real simulations).
    bad = rng.choice(n, size=min(3, n), replace=False)
    feh[bad] = -9.0
    mh = feh + np.log10(0.638 * 10**ofe + 0.362)
    metal_z = Z_SUN * 10**mh
    mass = np.full(n, 10 ** p["logm"] / n)

    rot = _random_rotation(rng)
    stars = np.column_stack([pos @ rot.T, vel @ rot.T, metal_z, feh, ofe, mass, age])
    truth = {
        "log_mstar_true": p["logm"],
        "bulge_fraction": p["bt"],
        "disk_scale_kpc": p["rd"],
        "vmax_kms": p["vmax"],
        "sfh_tau_gyr": p["tau"],
    }
    return stars, truth


TRUTH_UNITS = {
    "log_mstar_true": "log10(Msun)",
    "bulge_fraction": "",
    "disk_scale_kpc": "kpc",
    "vmax_kms": "km/s",
    "sfh_tau_gyr": "Gyr",
}


def simulate_stars(seed: int, cfg: Mapping[str, Any], first_id: int = 0) -> StarSet:
    r"""Draw ``cfg["n_galaxies"]`` galaxies with ids ``first_id, first_id + 1, ...`` into a :class:`StarSet`.

    Arguments:
        cfg: The ``particles.simulate`` config section.
    """

    ids = np.arange(first_id, first_id + int(cfg["n_galaxies"]), dtype=np.int64)
    galaxies, truths = [], []
    for gid in tqdm(ids, desc="simulate particles", unit="galaxy", leave=False):
        stars, truth = simulate_galaxy(seed, int(gid), cfg)
        galaxies.append(stars)
        truths.append(truth)
    catalog: dict[str, np.ndarray] = {"id": ids}
    for key in TRUTH_UNITS:
        catalog[key] = np.array([t[key] for t in truths], np.float64)
    units = {"id": "", **TRUTH_UNITS}
    return StarSet.from_list(galaxies, catalog, units, NPY_COLUMNS, {"source": "simulate"})
