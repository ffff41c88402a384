r"""Figures of the metrics stage (matplotlib, Agg backend, PNG).

Kinds (keys of the ``paths`` mapping of :func:`make_plots`; any may be left out):
``grid`` the brightest test galaxies: real, reconstruction, flow and parametric stamps at the same
conditions and the reconstruction residual in noise σ; ``histograms`` of every property (all, bright bin),
``power_spectra`` mean 1-D spectra, ``conditional`` requested vs measured conditions,
``latent_corner`` encoded test latents vs flow samples, ``loss_curves`` training histories.
"""

from __future__ import annotations

__all__ = ["GRID_MODELS", "KINDS", "corner_axes", "grid_index", "make_plots"]

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..atomic import atomic_path
from ..contract import GalaxySet
from .power_spectrum import power_spectrum_1d

#: Figure kinds of :func:`make_plots`.
KINDS: tuple[str, ...] = ("grid", "histograms", "power_spectra", "conditional", "latent_corner", "loss_curves")
COLORS = {"real": "k", "flow": "C0", "gaussian": "C1", "parametric": "C2"}


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=72)
    plt.close(fig)


def grid_index(real: GalaxySet, n: int) -> np.ndarray:
    r"""The ``n`` galaxies of the stamp grid: the brightest by catalog ``mag`` (first ``n`` without it)."""
    order = np.argsort(np.asarray(real.catalog.get("mag", np.arange(len(real))), np.float64), kind="stable")
    return order[: min(n, len(real))]


#: Generated sets shown in the stamp grid, in this order (others are in the other figures).
GRID_MODELS = ("flow", "parametric")


def _grid(
    path: Any, real: GalaxySet, gens: dict[str, GalaxySet], channel: int, n: int, recon: np.ndarray | None = None
) -> None:
    r"""Brightest galaxies first; rows real / reconstruction / flow / parametric / (real - reconstruction) / σ.

    ``recon``: observed-image reconstructions (len(pick), H, W) in counts of the :func:`grid_index` galaxies.
    """
    pick = grid_index(real, n)
    rows = [("real", real.images[pick, channel])]
    if recon is not None:
        rows.append(("reconstruction", recon))
    rows += [(m, gens[m].images[pick, channel]) for m in GRID_MODELS if m in gens]
    sig = np.maximum(np.asarray(real.noise_sigma[pick], np.float64), 1e-12)
    resid = None if recon is None else (real.images[pick, channel] - recon) / sig[:, None, None]
    nrow = len(rows) + (resid is not None)
    fig, axes = plt.subplots(nrow, len(pick), figsize=(1.45 * len(pick), 1.5 * nrow), squeeze=False)
    for j in range(len(pick)):
        vmax = np.arcsinh(real.images[pick[j], channel].max() / sig[j])
        for r, (name, imgs) in enumerate(rows):
            axes[r, j].imshow(np.arcsinh(imgs[j] / sig[j]), origin="lower", cmap="gray_r", vmin=-1, vmax=vmax)
            if j == 0:
                axes[r, j].set_ylabel(name, fontsize=8)
        if resid is not None:
            axes[-1, j].imshow(resid[j], origin="lower", cmap="RdBu_r", vmin=-5, vmax=5)
            if j == 0:
                axes[-1, j].set_ylabel("residual / σ", fontsize=8)
        if "mag" in real.catalog:
            axes[0, j].set_title(f"{real.catalog['mag'][pick[j]]:.1f} mag", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.01, top=0.95, wspace=0.03, hspace=0.05)
    _save(fig, path)


def _hist(path: Any, real_props: dict, gen_props: dict, bright: np.ndarray | None = None) -> None:
    r"""Histograms of every property, real vs each generated set: all galaxies, then (rows below) the bright bin."""
    keys = [k for k in real_props if k != "hsm_failed"]
    ncol = 5
    nrow = int(np.ceil(len(keys) / ncol))
    bins_sel = [("all", slice(None))] + ([("bright", np.asarray(bright, bool))] if bright is not None else [])
    fig, axes = plt.subplots(nrow * len(bins_sel), ncol, figsize=(3 * ncol, 2.4 * nrow * len(bins_sel)), squeeze=False)
    for b, (label, sel) in enumerate(bins_sel):
        flat = axes[b * nrow : (b + 1) * nrow].flat
        for ax, k in zip(flat, keys, strict=False):
            sets = {"real": real_props[k][sel], **{m: p[k][sel] for m, p in gen_props.items()}}
            allv = np.concatenate([v[np.isfinite(v)] for v in sets.values()])
            ax.set_title(f"{k} ({label})", fontsize=9)
            if len(allv) == 0:
                continue
            lo, hi = np.percentile(allv, [1, 99])
            edges = np.linspace(lo, hi if hi > lo else lo + 1, 30)
            for name, v in sets.items():
                ax.hist(
                    v[np.isfinite(v)], bins=edges, histtype="step", density=True, color=COLORS.get(name), label=name
                )
        for ax in list(axes[b * nrow : (b + 1) * nrow].flat)[len(keys) :]:
            ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.06, top=0.95, wspace=0.3, hspace=0.55)
    _save(fig, path)


def _power(path: Any, real: GalaxySet, gens: dict[str, GalaxySet], channel: int, power: Callable) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, gs in [("real", real), *gens.items()]:
        k, p = power(gs.images[:, channel])
        with np.errstate(divide="ignore"):
            ax.semilogx(k, np.nanmean(np.log10(p), axis=0), color=COLORS.get(name), label=name)
    ax.set_xlabel("k [cycles / pixel]")
    ax.set_ylabel("<log10 P(k) / counts²>")
    ax.legend()
    _save(fig, path)


def _conditional(path: Any, real: GalaxySet, gens: dict, real_props: dict, gen_props: dict) -> None:
    ps, zp = real.pixel_scale, float(real.attrs["zeropoint_ab"])

    def measured(p: dict) -> dict:
        f = np.asarray(p["flux"], np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = np.where(f > 0, zp - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)
        return {"mag": mag, "hlr_arcsec": np.asarray(p["r50"]) * ps}

    conds = [c for c in ("mag", "hlr_arcsec") if c in real.catalog]
    fig, axes = plt.subplots(1, max(len(conds), 1), figsize=(4 * max(len(conds), 1), 3.6), squeeze=False)
    for ax, c in zip(axes[0], conds, strict=False):
        sets = [("real", real, real_props)] + [(m, gens[m], gen_props[m]) for m in gens]
        for name, gs, p in sets:
            ax.scatter(gs.catalog[c], measured(p)[c], s=4, alpha=0.5, color=COLORS.get(name), label=name)
        lo, hi = np.nanmin(real.catalog[c]), np.nanmax(real.catalog[c])
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.set_xlabel(f"requested {c}")
        ax.set_ylabel(f"measured {c}")
    axes[0, 0].legend(fontsize=7)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.3, hspace=0.45)
    _save(fig, path)


def corner_axes(
    axes: np.ndarray,
    sets: Sequence[tuple[np.ndarray, str, str | None]],
    labels: Sequence[str],
    *,
    bins: Callable[[int], Any] = lambda i: 30,
    limits: np.ndarray | None = None,
    point_size: float = 2,
    alpha: float = 0.4,
    rasterized: bool = False,
    label_size: float | None = None,
    tick_size: float | None = None,
    top_ylabel: bool = True,
) -> None:
    r"""Draw a corner plot on a (D, D) grid of ``axes``: histograms on the diagonal, scatter plots below.

    Arguments:
        sets: ``(points (N, D), colour, legend label or None)`` per set, drawn in this order.
        labels: Axis label of each of the D columns.
        bins: Histogram bins of column i (``bins(i)``: a count or edges).
        limits: Optional (D, 2) axis limits of the scatter plots.
        point_size, alpha, rasterized: Style of the scatter points.
        label_size, tick_size: Font sizes of the axis labels and tick labels (None: matplotlib's).
        top_ylabel: Label the y axis of the top-left histogram too.
    """
    d = len(labels)
    font = {} if label_size is None else {"fontsize": label_size}
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                for pts, color, label in sets:
                    extra = {} if label is None else {"label": label}
                    ax.hist(pts[:, i], bins=bins(i), histtype="step", density=True, color=color, **extra)
            else:
                for pts, color, _ in sets:
                    ax.scatter(pts[:, j], pts[:, i], s=point_size, alpha=alpha, color=color, rasterized=rasterized)
                if limits is not None:
                    ax.set_xlim(limits[j])
                    ax.set_ylim(limits[i])
            if tick_size is not None:
                ax.tick_params(labelsize=tick_size)
            if i == d - 1:
                ax.set_xlabel(labels[j], **font)
            if j == 0 and (i > 0 or top_ylabel):
                ax.set_ylabel(labels[i], **font)


def _corner(path: Any, z_real: np.ndarray | None, z_gen: np.ndarray | None, dims: int) -> None:
    if z_real is None:
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.text(0.5, 0.5, "no latents", ha="center")
        ax.axis("off")
        _save(fig, path)
        return
    d = min(dims, z_real.shape[1])
    fig, axes = plt.subplots(d, d, figsize=(2 * d, 2 * d), squeeze=False)
    sets = [(z_real, "k", "encoded test")] + ([(z_gen, "C0", "flow samples")] if z_gen is not None else [])
    corner_axes(axes, sets, [f"z{i}" for i in range(d)])
    axes[0, 0].legend(fontsize=6)
    _save(fig, path)


def _losses(path: Any, histories: dict[str, Any]) -> None:
    import pandas as pd

    n = max(len(histories), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.2), squeeze=False)
    for ax, (name, p) in zip(axes[0], histories.items(), strict=False):
        if not Path(p).exists():
            ax.set_title(f"{name}: no history")
            continue
        h = pd.read_csv(p)
        x = h["epoch"] if "epoch" in h and "level" not in h else np.arange(len(h))  # levels: one after the other
        for col in ("train_loss", "val_loss"):
            if col in h:
                ax.plot(x, h[col], label=col)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.3, hspace=0.45)
    _save(fig, path)


def make_plots(
    paths: Mapping[str, str | os.PathLike],
    *,
    real: GalaxySet,
    gens: dict[str, GalaxySet],
    real_props: dict[str, np.ndarray],
    gen_props: dict[str, dict[str, np.ndarray]],
    channel: int,
    config: Mapping[str, Any],
    z_real: np.ndarray | None = None,
    z_gen: np.ndarray | None = None,
    histories: dict[str, Any] | None = None,
    recon: np.ndarray | None = None,
    bright: np.ndarray | None = None,
) -> None:
    r"""Write each requested figure kind to its path (see the module docstring).

    Arguments:
        config: The ``metrics.plots`` config section (``n_grid``, ``corner_dims``).
        recon: Reconstructions (counts, observed) of the grid's galaxies (:func:`grid_index`), or None.
        bright: Mask of the bright bin (histograms of the bin below those of all galaxies), or None.
    """
    unknown = set(paths) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown plot kinds {sorted(unknown)}")
    if "grid" in paths:
        _grid(paths["grid"], real, gens, channel, int(config["n_grid"]), recon)
    if "histograms" in paths:
        _hist(paths["histograms"], real_props, gen_props, bright)
    if "power_spectra" in paths:
        _power(paths["power_spectra"], real, gens, channel, power_spectrum_1d)
    if "conditional" in paths:
        _conditional(paths["conditional"], real, gens, real_props, gen_props)
    if "latent_corner" in paths:
        _corner(paths["latent_corner"], z_real, z_gen, int(config["corner_dims"]))
    if "loss_curves" in paths:
        _losses(paths["loss_curves"], histories or {})
