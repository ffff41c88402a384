r"""One set of conditions sampled several times: what the generator varies and what it keeps.

For a few bright test galaxies, the figure shows, per condition, two rows of PSF-free generated stamps:

- ``flow``: independent draws at the same conditions (new global latent and new detail map each time),
- ``detail``: one global latent decoded with several detail seeds (same galaxy, different clumps and
  small-scale structure; identical stamps for a one-level model).

Example:
    >>> import numpy as np
    >>> spread = detail_spread(np.ones((3, 1, 4, 4)) + np.arange(3)[:, None, None, None])
    >>> round(spread, 3)
    0.408
"""

from __future__ import annotations

__all__ = ["detail_spread", "plot_draws", "run_plot_draws"]

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..contract import read_galaxies
from ..generator import Generator

log = logging.getLogger(__name__)


def detail_spread(images: np.ndarray) -> float:
    r"""RMS over pixels of the standard deviation between draws, relative to the RMS of their mean.

    Arguments:
        images: Draws of one galaxy (K, C, H, W) in counts.

    Returns:
        0 when every draw is identical; of order the clump light fraction when the substructure differs.
    """

    mean = images.mean(axis=0)
    return float(np.sqrt((images.std(axis=0) ** 2).mean() / max((mean**2).mean(), 1e-30)))


def plot_draws(
    generator: Generator,
    conditions: Any,
    path: str | os.PathLike,
    *,
    n_draws: int = 8,
    seed: int = 0,
    channel: int = 0,
) -> dict[str, list[float]]:
    r"""Draw each condition row ``n_draws`` times, two ways, and save the figure (PNG, 96 px per stamp).

    Arguments:
        generator: A loaded :class:`~morphoflow.generator.Generator`.
        conditions: A DataFrame of condition rows (the generator's context columns).
        path: Output PNG.
        n_draws: Draws per row.
        seed: Seed of the draws.
        channel: Band shown.

    Returns:
        ``{"flow": [...], "detail": [...]}``: the :func:`detail_spread` of each condition's draws.
    """

    rows, spreads = [], {"flow": [], "detail": []}
    for i in range(len(conditions)):
        row = conditions.iloc[[i]]
        full = generator.sample(row, n=n_draws, seed=seed + i).images
        z = generator.sample(row, n=1, seed=seed + i).z
        detail = generator.decode(np.repeat(z, n_draws, axis=0), seed=seed + i)
        spreads["flow"].append(detail_spread(full))
        spreads["detail"].append(detail_spread(detail))
        label = ", ".join(f"{k} {float(row[k].iloc[0]):.2f}" for k in generator.context_columns)
        rows += [(f"{label}: flow draws", full), ("the same global latent, new detail maps", detail)]
    _figure(rows, path, channel)
    return spreads


def _figure(rows: list[tuple[str, np.ndarray]], path: str | os.PathLike, channel: int) -> None:
    n = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.45 * n, 1.7 * len(rows)), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.94, wspace=0.04, hspace=0.3)
    for r, (label, images) in enumerate(rows):
        stamps = images[:, channel]
        s = max(float(np.abs(stamps).max()) / 100.0, 1e-12)  # asinh stretch over 100:1 of the row's peak
        for j in range(n):
            ax = axes[r, j]
            ax.imshow(np.arcsinh(stamps[j] / s), origin="lower", cmap="gray_r", vmin=0, vmax=np.arcsinh(100.0))
            ax.set_axis_off()
        axes[r, 0].set_title(label, fontsize=9, loc="left")
    fig.suptitle("One set of conditions sampled several times (PSF-free, noiseless)", fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=72)  # 1.45 in x 72 dpi: > 96 px per stamp
    plt.close(fig)


def run_plot_draws(
    *,
    test: str | os.PathLike,
    autoencoder: str | os.PathLike,
    flow: str | os.PathLike,
    plot: str | os.PathLike,
    spread: str | os.PathLike,
    config: Mapping[str, Any],
) -> dict[str, list[float]]:
    r"""Rule ``plot_draws``: the brightest test galaxies' conditions, each sampled ``n_draws`` times.

    Arguments:
        test: The test split (its catalog gives the conditions; brightest ``n_conditions`` by ``mag``).
        autoencoder: The trained autoencoder file.
        flow: The trained flow file.
        plot: Output figure (``results/plots/draws.png``).
        spread: Output JSON of the :func:`detail_spread` per condition and kind.
        config: ``{"seed": ..., "sample": {"draws": {"n_conditions": ..., "n_draws": ...}}}``.
    """

    cfg = config["sample"]["draws"]
    catalog = read_galaxies(test, load_pixels=False).catalog
    order = np.argsort(np.asarray(catalog["mag"], np.float64), kind="stable")[: int(cfg["n_conditions"])]
    generator = Generator.load(autoencoder=autoencoder, flow=flow, on_out_of_range="warn")
    rows = pd.DataFrame({c: np.asarray(catalog[c])[order] for c in generator.context_columns})
    spreads = plot_draws(generator, rows, plot, n_draws=int(cfg["n_draws"]), seed=int(config["seed"]))
    log.info("detail spread per condition: %s", spreads)
    with atomic_path(spread) as tmp:
        tmp.write_text(json.dumps({"conditions": rows.to_dict("list"), "spread": spreads}, indent=2) + "\n")
    return spreads
