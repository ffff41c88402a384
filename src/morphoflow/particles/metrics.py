r"""Two-sample distances between sampled and true stars of a galaxy, each with its noise floor.

All distances are computed on the flow target (:data:`~morphoflow.particles.dataset.TARGET_COLUMNS`,
log Z) divided by a per-dimension ``scale`` (the training-split standard deviation), so that every
dimension counts alike and values are in units of that scale:

* ``w1``: 1-D Wasserstein-1 distance per dimension (:func:`scipy.stats.wasserstein_distance`);
* ``swd``: sliced Wasserstein-1 distance, mean over ``n_proj`` random unit directions
  (Bonneel et al. 2015);
* ``mmd``: squared maximum mean discrepancy, unbiased estimate, RBF kernel with the median pairwise
  distance as bandwidth (Gretton et al. 2012);
* ``c2st_auc``: classifier two-sample test (Lopez-Paz & Oquab 2017, :func:`particle_c2st_auc`): a small
  torch MLP trained on one half of the pooled samples, ROC AUC (:func:`morphoflow.metrics.c2st.roc_auc`) on
  the other half; 0.5 = indistinguishable.

The floor of each metric compares two disjoint halves A, B of the true stars; the model's value
compares a sample S of the size of A with the same B (:func:`galaxy_metrics`).
"""

from __future__ import annotations

__all__ = [
    "METRICS",
    "galaxy_metrics",
    "mmd_rbf",
    "particle_c2st_auc",
    "sliced_wasserstein",
    "summarise",
    "w1_per_dim",
]  # fmt: skip

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from ..metrics.c2st import roc_auc
from ..seeding import item_rng, item_seed

METRICS: tuple[str, ...] = ("w1_mean", "swd", "mmd", "c2st_auc")


def w1_per_dim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""Wasserstein-1 distance of each column of ``a`` (N, D) and ``b`` (M, D)."""
    return np.array([wasserstein_distance(a[:, d], b[:, d]) for d in range(a.shape[1])])


def sliced_wasserstein(
    a: np.ndarray, b: np.ndarray, n_proj: int = 128, rng: np.random.Generator | None = None
) -> float:
    r"""Mean Wasserstein-1 distance of 1-D projections on ``n_proj`` random unit directions."""
    rng = rng or np.random.default_rng(0)
    dirs = rng.standard_normal((n_proj, a.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pa, pb = a @ dirs.T, b @ dirs.T
    if len(pa) == len(pb):  # equal sizes: W1 is the mean gap of the sorted projections
        return float(np.abs(np.sort(pa, 0) - np.sort(pb, 0)).mean())
    return float(np.mean([wasserstein_distance(pa[:, k], pb[:, k]) for k in range(n_proj)]))


def mmd_rbf(a: np.ndarray, b: np.ndarray, max_n: int = 1000, rng: np.random.Generator | None = None) -> float:
    r"""Unbiased squared MMD with an RBF kernel, bandwidth = median pairwise distance (at most ``max_n`` points each)."""
    rng = rng or np.random.default_rng(0)
    if len(a) > max_n:
        a = a[rng.choice(len(a), max_n, replace=False)]
    if len(b) > max_n:
        b = b[rng.choice(len(b), max_n, replace=False)]
    x = torch.as_tensor(np.concatenate([a, b]), dtype=torch.float64)
    d2 = torch.cdist(x, x).square()
    n, m = len(a), len(b)
    med = torch.median(d2[torch.triu_indices(n + m, n + m, 1).unbind()]).clamp_min(1e-12)
    k = torch.exp(-d2 / med)
    kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
    return float(
        (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
        + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
        - 2 * kab.mean()
    )


def particle_c2st_auc(
    a: np.ndarray, b: np.ndarray, seed: int = 0, max_n: int = 1000, hidden: int = 32, steps: int = 300
) -> float:
    r"""ROC AUC of a 2-layer MLP (``hidden`` units, Adam, ``steps`` full-batch steps) telling star sets ``a``
    (N, D) from ``b`` (M, D) on held-out halves (the images' C2ST is :func:`morphoflow.metrics.c2st.c2st_auc`)."""

    rng = np.random.default_rng(seed)
    n = min(len(a), len(b), max_n)
    a = a[rng.choice(len(a), n, replace=False)]
    b = b[rng.choice(len(b), n, replace=False)]
    x = np.concatenate([a, b]).astype(np.float32)
    y = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.float32)
    perm = rng.permutation(2 * n)
    tr, te = perm[:n], perm[n:]
    gen = torch.Generator().manual_seed(seed)
    d = x.shape[1]
    w1 = torch.nn.Linear(d, hidden)
    w2 = torch.nn.Linear(hidden, hidden)
    w3 = torch.nn.Linear(hidden, 1)
    for layer in (w1, w2, w3):
        torch.nn.init.normal_(layer.weight, 0, 1 / np.sqrt(layer.in_features), generator=gen)
        torch.nn.init.zeros_(layer.bias)
    net = torch.nn.Sequential(w1, torch.nn.SiLU(), w2, torch.nn.SiLU(), w3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.as_tensor(x[tr]), torch.as_tensor(y[tr])
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt).squeeze(-1), yt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        score = net(torch.as_tensor(x[te])).squeeze(-1).numpy()
    return roc_auc(score, y[te])


def galaxy_metrics(
    sample: np.ndarray,
    truth: np.ndarray,
    scale: Sequence[float],
    seed: int,
    galaxy_id: int,
    cfg: Mapping[str, Any],
) -> dict[str, Any]:
    r"""Metrics of one galaxy and their floors.

    ``truth`` is split at random into halves A and B; the model's values compare the first ``len(A)``
    sampled stars with B, the floors compare A with B. Random draws use ``item_rng(seed, galaxy_id, ...)``.

    Arguments:
        cfg: The ``particles.metrics`` config section (``n_proj``, ``max_n``, ``c2st_steps``).
    """

    scale = np.asarray(scale, np.float64)
    sample = np.asarray(sample, np.float64) / scale
    truth = np.asarray(truth, np.float64) / scale
    perm = item_rng(seed, galaxy_id, "particles.halves").permutation(len(truth))
    half = len(truth) // 2
    part_a, part_b = truth[perm[:half]], truth[perm[half : 2 * half]]
    s = sample[:half]
    out: dict[str, Any] = {"id": int(galaxy_id), "n_true": len(truth)}
    n_proj, max_n = int(cfg["n_proj"]), int(cfg["max_n"])
    c2st_seed = item_seed(seed, galaxy_id, "particles.c2st") % 2**31
    for tag, x in (("model", s), ("floor", part_a)):
        w1 = w1_per_dim(x, part_b)
        out[tag] = {
            "w1": w1.tolist(),
            "w1_mean": float(w1.mean()),
            "swd": sliced_wasserstein(x, part_b, n_proj, item_rng(seed, galaxy_id, "particles.swd")),
            "mmd": mmd_rbf(x, part_b, max_n, item_rng(seed, galaxy_id, "particles.mmd")),
            "c2st_auc": particle_c2st_auc(x, part_b, c2st_seed, max_n, steps=int(cfg["c2st_steps"])),
        }
    return out


def summarise(per_galaxy: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    r"""Means over galaxies of each metric (model and floor) and of the per-dimension W1."""

    out: dict[str, Any] = {"n_galaxies": len(per_galaxy)}
    for tag in ("model", "floor"):
        out[tag] = {m: float(np.mean([g[tag][m] for g in per_galaxy])) for m in METRICS}
        w1 = np.mean([g[tag]["w1"] for g in per_galaxy], axis=0)
        out[tag]["w1_per_dim"] = {c: float(v) for c, v in zip(columns, w1, strict=True)}
    return out
