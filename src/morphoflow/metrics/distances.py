r"""Distances between two samples of galaxy properties, and the real-vs-real floor.

* :func:`wasserstein_1d`: 1-D Wasserstein (earth mover's) distance of one property
  (``scipy.stats.wasserstein_distance``), in the property's unit; NaNs are dropped.
* :func:`frechet_distance`: Fréchet distance between Gaussians fitted to two feature matrices
  (the FID formula, Heusel et al. 2017, on morphology features instead of Inception features),
  after standardising both by the mean and std of the reference set.
* :func:`split_halves`: the deterministic A/B halves of the test split
  (``hash_unit(id, "metrics-half") < 0.5`` → A); the floor of a distance is d(real A, real B).
"""

from __future__ import annotations

__all__ = ["frechet_distance", "split_halves", "wasserstein_1d", "with_floor"]

import warnings

import numpy as np
from scipy import linalg
from scipy.stats import wasserstein_distance

from ..seeding import hash_unit


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    r"""W1 distance between the finite values of ``a`` and ``b`` (NaN if either has fewer than 2)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float(wasserstein_distance(a, b))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    r"""Fréchet distance :math:`|\mu_a - \mu_b|^2 + \mathrm{tr}(\Sigma_a + \Sigma_b - 2(\Sigma_a\Sigma_b)^{1/2})`.

    ``a`` (reference) and ``b`` are (N, F) feature matrices; rows with a NaN are dropped and both
    are standardised by the mean and std of ``a``.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a, b = a[np.isfinite(a).all(axis=1)], b[np.isfinite(b).all(axis=1)]
    f = a.shape[1]
    if len(a) <= f or len(b) <= f:
        return float("nan")
    mu, sd = a.mean(axis=0), a.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    a, b = (a - mu) / sd, (b - mu) / sd
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-singular covariances of small samples
        covmean = linalg.sqrtm(ca @ cb)
    covmean = np.real(covmean)
    d = float(np.sum((ma - mb) ** 2) + np.trace(ca + cb - 2.0 * covmean))
    return max(d, 0.0)


def split_halves(ids: np.ndarray, salt: str = "metrics-half") -> tuple[np.ndarray, np.ndarray]:
    r"""Boolean masks (A, B) of the two deterministic halves of a split, by hashing the ids."""
    u = np.array([hash_unit(int(i), salt) for i in np.asarray(ids)])
    a = u < 0.5
    return a, ~a


def with_floor(distance: float, floor: float, key: str = "w1") -> dict[str, float]:
    r"""``{key: distance, "floor": floor, "ratio": distance / floor}`` (ratio NaN if floor ≤ 0)."""
    ratio = distance / floor if (np.isfinite(floor) and floor > 0 and np.isfinite(distance)) else float("nan")
    return {key: float(distance), "floor": float(floor), "ratio": float(ratio)}
