r"""Figures of star-particle mode: corner plot, face-on maps of mean [Fe/H] and age, per-dimension histograms."""

from __future__ import annotations

__all__ = ["corner_plot", "faceon_maps", "histograms"]

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import binned_statistic_2d

from ..atomic import atomic_path
from ..metrics.plots import corner_axes

LABELS = {
    "x": "x [kpc]", "y": "y [kpc]", "z": "z [kpc]", "vx": "vx [km/s]", "vy": "vy [km/s]", "vz": "vz [km/s]",
    "logZ": "log10 Z", "Z": "Z", "feh": "[Fe/H]", "ofe": "[O/Fe]", "age": "age [Gyr]",
}  # fmt: skip


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def _limits(truth: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(truth, [1, 99], axis=0)
    pad = 0.1 * (hi - lo + 1e-9)
    return np.stack([lo - pad, hi + pad], 1)


def corner_plot(
    sample: np.ndarray,
    truth: np.ndarray,
    columns: list[str],
    path: str | os.PathLike,
    title: str = "",
    max_points: int = 2000,
) -> None:
    r"""Lower-triangle scatter and diagonal histograms of sampled (orange) vs true (blue) stars of one galaxy
    (at most ``max_points`` of each, drawn with a fixed seed), on the central 98 % of the true stars."""

    rng = np.random.default_rng(0)
    s = sample[rng.permutation(len(sample))[:max_points]]
    t = truth[rng.permutation(len(truth))[:max_points]]
    d = len(columns)
    lim = _limits(truth)
    fig, axes = plt.subplots(d, d, figsize=(1.6 * d, 1.6 * d))
    corner_axes(
        axes,
        [(t, "C0", None), (s, "C1", None)],
        [LABELS.get(c, c) for c in columns],
        bins=lambda i: np.linspace(*lim[i], 30),
        limits=lim,
        point_size=0.3,
        alpha=0.3,
        rasterized=True,
        label_size=7,
        tick_size=5,
        top_ylabel=False,
    )
    fig.suptitle(f"{title}  blue: true, orange: sampled")
    _save(fig, path)


def faceon_maps(
    sample: np.ndarray,
    truth: np.ndarray,
    columns: list[str],
    path: str | os.PathLike,
    title: str = "",
    bins: int = 24,
) -> None:
    r"""Face-on (x-y) maps of the mean [Fe/H] and mean age, true vs sampled."""

    ix, iy = columns.index("x"), columns.index("y")
    r = np.percentile(np.abs(truth[:, [ix, iy]]), 95)
    edges = np.linspace(-r, r, bins + 1)
    fig, axes = plt.subplots(2, 2, figsize=(8, 7))
    for row, (col, cmap) in enumerate((("feh", "viridis"), ("age", "magma"))):
        k = columns.index(col)
        maps = [binned_statistic_2d(d[:, ix], d[:, iy], d[:, k], "mean", bins=[edges, edges]).statistic.T
                for d in (truth, sample)]  # fmt: skip
        finite = np.concatenate([m[np.isfinite(m)] for m in maps])
        vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0, 1)
        for c, (m, name) in enumerate(zip(maps, ("true", "sampled"), strict=True)):
            im = axes[row, c].imshow(m, origin="lower", extent=[-r, r, -r, r], cmap=cmap, vmin=vmin, vmax=vmax)
            axes[row, c].set_title(f"mean {LABELS.get(col, col)} ({name})", fontsize=9)
            axes[row, c].set_xlabel("x [kpc]")
            axes[row, c].set_ylabel("y [kpc]")
            fig.colorbar(im, ax=axes[row, c])
    fig.suptitle(title)
    _save(fig, path)


def histograms(
    samples: dict[str, np.ndarray], truth: np.ndarray, columns: list[str], path: str | os.PathLike, title: str = ""
) -> None:
    r"""Per-dimension histograms of true stars and of each variant's samples (pooled over held-out galaxies)."""

    d = len(columns)
    ncol = 5
    nrow = int(np.ceil(d / ncol))
    lim = _limits(truth)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 2.5 * nrow))
    for k, ax in enumerate(np.ravel(axes)):
        if k >= d:
            ax.axis("off")
            continue
        bins = np.linspace(*lim[k], 50)
        ax.hist(truth[:, k], bins, density=True, histtype="stepfilled", alpha=0.3, color="k", label="true")
        for i, (name, s) in enumerate(samples.items()):
            ax.hist(s[:, k], bins, density=True, histtype="step", color=f"C{i}", label=name)
        ax.set_xlabel(LABELS.get(columns[k], columns[k]))
        if k == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
