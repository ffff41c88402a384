r"""Stage-1 test figures: reconstruction χ², MSE and SSIM of the autoencoder on the test split, and plots.

Figures (``results/autoencoder/test_metrics.json``):

* ``test_chi2_per_pixel``: reduced χ² per pixel, :math:`\langle ((x - m) / \sigma)^2 \rangle`, pooled over the
  pixels of each galaxy's footprint; ``x`` the observed stamp, ``m`` the posterior-mean reconstruction
  convolved with the PSF (if psf_aware), σ the pixel noise. The footprint is where the noiseless,
  PSF-convolved truth exceeds ``footprint_fraction`` σ (if the file has ``truth``), else a
  ``segmentation_nsigma`` σ segmentation of the smoothed observed stamp (the component at the centre).
  A noise-limited model gives 1.0.
* ``test_chi2_per_pixel_stamp``: the same over whole stamps.
* ``test_mse``: mean squared residual in normalised units (counts / norm_scale)²; includes the noise.
* ``test_ssim``: mean over galaxies of :func:`skimage.metrics.structural_similarity` between the observed
  stamp and ``m`` (normalised units), ``data_range`` = the observed stamp's max − min.
"""

from __future__ import annotations

__all__ = [
    "footprint_masks",
    "plot_loss",
    "plot_reconstructions",
    "reconstruct_set",
    "run_evaluate_autoencoder",
    "test_metrics",
    "truth_footprints",
]

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity
from torch import nn

from ..atomic import atomic_path
from ..contract import GalaxySet, read_galaxies
from .forward import fft_convolve
from .io import check_stamps, load_autoencoder
from .objective import AutoencoderLoss, reconstruct, stamp_tensors

log = logging.getLogger(__name__)


def footprint_masks(
    observed: np.ndarray,
    sigma: np.ndarray,
    truth_observed: np.ndarray | None,
    fraction: float = 0.1,
    nsigma: float = 2.0,
) -> np.ndarray:
    r"""Boolean footprints (N, C, H, W) of galaxies.

    Arguments:
        observed: Observed stamps (N, C, H, W).
        sigma: Pixel noise std (N,) in the same units.
        truth_observed: Noiseless PSF-convolved stamps (N, C, H, W), or None.
        fraction: With truth: pixels where the truth exceeds ``fraction * sigma``.
        nsigma: Without truth: pixels of the observed stamp smoothed by a Gaussian of 1 pixel that exceed
            ``nsigma`` times the smoothed noise std, keeping the connected component nearest the centre.
    """

    s = sigma.reshape(-1, 1, 1, 1)
    if truth_observed is not None:
        return truth_observed > fraction * s
    n, c, h, w = observed.shape
    kernel_norm = np.sqrt((_gauss_kernel(1.0) ** 2).sum())  # std of smoothed white noise, per unit sigma
    masks = np.zeros(observed.shape, bool)
    for i in range(n):
        for ch in range(c):
            sm = ndimage.gaussian_filter(observed[i, ch], 1.0, mode="constant")
            on = sm > nsigma * kernel_norm * sigma[i]
            labels, count = ndimage.label(on)
            if count == 0:
                continue
            yy, xx = np.nonzero(labels)
            d = (yy - h // 2) ** 2 + (xx - w // 2) ** 2
            masks[i, ch] = labels == labels[yy[d.argmin()], xx[d.argmin()]]
    return masks


def _gauss_kernel(s: float) -> np.ndarray:
    r = np.arange(-4 * int(np.ceil(s)), 4 * int(np.ceil(s)) + 1)
    k = np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / s**2)
    return k / k.sum()


def truth_footprints(gs: GalaxySet, fraction: float = 0.1) -> np.ndarray | None:
    r"""Footprints (N, C, H, W) where the noiseless observed truth (``truth`` ⊛ ``psf``) exceeds ``fraction`` σ.

    Returns None when the set has no ``truth`` (real data: use :func:`footprint_masks`' segmentation).
    """

    if gs.truth is None:
        return None
    t = torch.from_numpy(np.asarray(gs.truth, np.float64))
    truth_obs = fft_convolve(t, torch.from_numpy(np.asarray(gs.psf, np.float64))).numpy()
    return footprint_masks(gs.images, np.asarray(gs.noise_sigma, np.float64), truth_obs, fraction)


@torch.no_grad()
def reconstruct_set(
    model: nn.Module, meta: dict[str, Any], gs: GalaxySet, batch_size: int = 256, device: str = "cpu"
) -> dict[str, np.ndarray]:
    r"""Posterior-mean reconstructions of a galaxy set in normalised units.

    Returns ``x`` (observed), ``sigma``, ``model`` (observed-image model), ``output`` (decoder output,
    PSF-free if psf_aware) and ``z`` (N, D). A two-level model uses its detail map's posterior mean.
    """

    st = stamp_tensors(gs, norm_scale=float(meta["norm_scale"]))
    loss = AutoencoderLoss(st.psf, st.power, bool(meta["psf_aware"]), meta.get("likelihood", "pixel"), 0.0)
    model = model.to(device).eval()
    outs: dict[str, list[np.ndarray]] = {"model": [], "output": [], "z": []}
    for start in range(0, len(st.x), batch_size):
        index = torch.arange(start, min(start + batch_size, len(st.x)))
        mu, g, m = reconstruct(model, loss, st.x[index].to(device), index.to(device))
        outs["model"].append(m.cpu().numpy())
        outs["output"].append(g.cpu().numpy())
        outs["z"].append(mu.float().cpu().numpy())
    res = {k: np.concatenate(v) for k, v in outs.items()}
    res["x"] = st.x.numpy()
    res["sigma"] = st.sigma.numpy()
    return res


def test_metrics(rec: dict[str, np.ndarray], gs: GalaxySet, fraction: float, nsigma: float) -> dict[str, float]:
    r"""The figures of the module docstring from :func:`reconstruct_set`'s output."""

    x, m, sigma = rec["x"], rec["model"], rec["sigma"]
    mask = truth_footprints(gs, fraction)
    from_truth = mask is not None
    if mask is None:
        mask = footprint_masks(x, sigma, None, fraction, nsigma)
    r2 = ((x - m) / sigma.reshape(-1, 1, 1, 1)) ** 2
    ssim = []
    for i in range(len(x)):
        rng = float(x[i].max() - x[i].min())
        ssim.append(structural_similarity(x[i], m[i], data_range=rng, channel_axis=0))
    npix = int(mask.sum())
    return {
        "test_chi2_per_pixel": float(r2[mask].sum() / max(npix, 1)),
        "test_chi2_per_pixel_stamp": float(r2.mean()),
        "test_mse": float(((x - m) ** 2).mean()),
        "test_ssim": float(np.mean(ssim)),
        "footprint_pixels_per_galaxy": float(npix / len(x)),
        "footprint_source": "truth" if from_truth else "segmentation",
        "n_galaxies": len(x),
    }


def plot_reconstructions(rec: dict[str, np.ndarray], path: str | os.PathLike, n: int = 8, channel: int = 0) -> None:
    r"""Grid of ``n`` galaxies: observed | reconstruction | residual (noise σ) | PSF-free output (normalised units)."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(rec["x"]))
    fig, axes = plt.subplots(n, 4, figsize=(8, 2 * n), squeeze=False)
    titles = ["observed", "reconstruction", "residual / σ", "PSF-free output"]
    for i in range(n):
        x, m, g = rec["x"][i, channel], rec["model"][i, channel], rec["output"][i, channel]
        lo, hi = float(np.percentile(x, 1)), float(x.max())
        res = (x - m) / rec["sigma"][i]
        panels = [
            (x, lo, hi, "gray"),
            (m, lo, hi, "gray"),
            (res, -4, 4, "RdBu_r"),
            (g, lo, max(hi, float(g.max())), "gray"),
        ]
        for j, (img, vmin, vmax, cmap) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def plot_loss(history: pd.DataFrame, path: str | os.PathLike) -> None:
    r"""Training and validation loss (nats per pixel), reduced χ² and KL per epoch; a two-level model's history
    (column ``level``) runs on, the detail level's epochs after the global level's."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in ("loss", "chi2", "kl") if f"train_{c}" in history]
    levels = history["level"] if "level" in history else pd.Series(["global"] * len(history))
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3), squeeze=False)
    for ax, c in zip(axes[0], cols, strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            for level in dict.fromkeys(levels):
                rows = (levels == level).to_numpy()
                ax.plot(
                    np.flatnonzero(rows), history[f"{split}_{c}"][rows], style, marker=".", label=f"{split} {level}"
                )
        ax.set_xlabel("epoch (global, then detail)" if levels.nunique() > 1 else "epoch")
        ax.set_ylabel(c)
        if c != "kl" and (history[[f"train_{c}", f"val_{c}"]].to_numpy() > 0).all():
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _read_floors(path: str | os.PathLike) -> dict[str, float]:
    r"""The oracle χ² floors of :mod:`morphoflow.data.floors` as ``floor_{exact,smooth}_chi2_per_pixel``."""

    try:
        floors = json.loads(Path(path).read_text())
        return {f"floor_{k}_chi2_per_pixel": float(floors[k]["chi2_per_pixel"]) for k in ("exact", "smooth")}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: cannot read the chi2 floors ({type(err).__name__}: {err})") from err


def _read_history(path: str | os.PathLike) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read the training history ({err})") from err


def run_evaluate_autoencoder(
    *,
    model: str | os.PathLike,
    test: str | os.PathLike,
    history: str | os.PathLike,
    metrics: str | os.PathLike,
    reconstructions: str | os.PathLike,
    loss: str | os.PathLike,
    config: Mapping[str, Any],
    floors: str | os.PathLike | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    r"""Rule ``evaluate_autoencoder``: the stage-1 test figures as JSON, and the reconstruction and loss plots.

    Arguments:
        model: The trained autoencoder file.
        test: The test split (contract file).
        history: The training history (CSV).
        metrics: Output JSON of the figures (module docstring).
        reconstructions, loss: Output plots (PNG).
        config: ``{"autoencoder": {"evaluate": ...}}`` from the validated config.
        floors: Optional :mod:`morphoflow.data.floors` JSON of the same test split; adds
            ``floor_exact_chi2_per_pixel`` and ``floor_smooth_chi2_per_pixel`` (footprint χ² of the oracles).
    """

    ev = config["autoencoder"]["evaluate"]
    net, meta = load_autoencoder(model, device=device)
    gs = read_galaxies(test)
    check_stamps(meta, gs, test, model)
    rec = reconstruct_set(net, meta, gs, device=device)
    figures = test_metrics(rec, gs, float(ev["footprint_fraction"]), float(ev["segmentation_nsigma"]))
    figures.update(
        {
            "model": meta["model"],
            "latent_dim": int(meta["latent_dim"]),
            "psf_aware": bool(meta["psf_aware"]),
            "likelihood": meta.get("likelihood", "pixel"),
        }
    )
    if floors is not None:
        figures.update(_read_floors(floors))
    with atomic_path(metrics) as tmp:
        tmp.write_text(json.dumps(figures, indent=2) + "\n")
    plot_reconstructions(rec, reconstructions, int(ev["n_plot"]))
    plot_loss(_read_history(history), loss)
    log.info("test metrics: %s", figures)
    return figures
