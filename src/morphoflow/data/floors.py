r"""Reference χ² floors of a simulated test split: what an exact model and a clump-free model would score.

For the embedded GalSim data set every galaxy can be redrawn from its id and the run's seed
(:meth:`morphoflow.data.simulate.Renderer.parameters`), so the stage-1 figure ``test_chi2_per_pixel`` can be
read against two oracles scored with the same footprints and the same pixel noise σ:

* ``exact``: the noiseless observed image itself (galaxy ⊛ PSF ⊛ pixel, GalSim). Scores 1.0 up to noise:
  the physical limit of a noise-limited model.
* ``smooth``: the same galaxy with its star-forming clumps (``simulate.knots``) folded back into the
  smooth disk: exact catalog parameters, flux and shape, but no clump positions. A model that learns
  everything except where the clumps are scores this.

A 16-number latent cannot hold the smooth parameters and the positions of ``n_knots`` clumps
(2 numbers each) at once, so on data with bright clumps the smooth floor, not 1.0, is what a small-latent
autoencoder should be compared with.

Figures (``results/data/test_floors.json``): for each oracle, ``chi2_per_pixel`` (pooled over the
footprints, as in :mod:`morphoflow.autoencoder.evaluate`) and ``chi2_per_pixel_stamp`` (whole stamps).
"""

from __future__ import annotations

__all__ = ["run_simulation_floors", "simulated_rows", "simulation_floors"]

import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..autoencoder.evaluate import truth_footprints
from ..contract import ContractError, GalaxySet, read_galaxies
from .simulate import Renderer

log = logging.getLogger(__name__)


def simulated_rows(gs: GalaxySet, renderer: Renderer, seed: int, name: str) -> Iterator[tuple[dict, int]]:
    r"""The simulation's parameter row and knot seed of each galaxy of ``gs``, checked against its catalog.

    Raises:
        ContractError: the stamps are not the renderer's, or a galaxy's magnitude is not the one the
            simulate config and ``seed`` draw for its id (the file comes from another config or seed).
    """

    if tuple(gs.images.shape[-2:]) != (renderer.n, renderer.n) or gs.images.shape[1] != 1:
        raise ContractError(
            f"{name}: dataset 'images' stamps {gs.images.shape[1:]} are not the simulation's "
            f"(1, {renderer.n}, {renderer.n})"
        )
    mags = np.asarray(gs.catalog["mag"], np.float64)
    for i, gid in enumerate(gs.ids):
        row, knot_seed, _ = renderer.parameters(int(gid), seed)
        if not np.isclose(row["mag"], mags[i], rtol=0, atol=1e-6):
            raise ContractError(
                f"{name}: galaxy id {int(gid)} has mag {mags[i]:.6f}, but the simulate config with seed {seed} "
                f"draws {row['mag']:.6f}; the file comes from another config or seed"
            )
        yield row, knot_seed


def simulation_floors(
    gs: GalaxySet, simulate_config: Mapping[str, Any], seed: int, fraction: float, name: str = "<memory>"
) -> dict[str, Any]:
    r"""χ² per pixel of the exact and the clump-free oracle models of a simulated galaxy set.

    Arguments:
        gs: Galaxies of the simulated data set (counts), with ``truth`` and the catalog column ``mag``.
        simulate_config: The ``simulate`` config section that made them (defaults filled).
        seed: The run's seed (``config["seed"]``).
        fraction: Footprint threshold (``autoencoder.evaluate.footprint_fraction``), in units of σ.
        name: File name for error messages.

    Raises:
        ContractError: the set has no truth, or its galaxies do not come from this config and seed.
    """

    if gs.truth is None:
        raise ContractError(f"{name}: dataset 'truth' is missing; floors need the simulated data set")
    renderer = Renderer(simulate_config)
    exact, smooth = [], []
    for row, knot_seed in simulated_rows(gs, renderer, seed, name):
        exact.append(renderer.draw(row, knot_seed)[0])
        smooth.append(renderer.draw(dict(row, knot_fraction=0.0), knot_seed)[0])
    x = gs.images.astype(np.float64)
    sigma = np.asarray(gs.noise_sigma, np.float64).reshape(-1, 1, 1, 1)
    mask = truth_footprints(gs, fraction)
    out: dict[str, Any] = {"n_galaxies": len(gs), "footprint_fraction": float(fraction)}
    for key, model in (("exact", exact), ("smooth", smooth)):
        r2 = ((x - np.stack(model)[:, None]) / sigma) ** 2
        out[key] = {
            "chi2_per_pixel": float(r2[mask].sum() / max(int(mask.sum()), 1)),
            "chi2_per_pixel_stamp": float(r2.mean()),
        }
    return out


def run_simulation_floors(
    *, test: str | os.PathLike, floors: str | os.PathLike, config: Mapping[str, Any]
) -> dict[str, Any]:
    r"""Rule ``simulation_floors``: :func:`simulation_floors` of the test split, written as JSON (atomic).

    Arguments:
        test: The simulated test split (``results/data/test.h5``).
        floors: Output JSON (``results/data/test_floors.json``).
        config: ``{"simulate": ..., "seed": ..., "autoencoder": {"evaluate": {"footprint_fraction": ...}}}``.
    """

    fraction = float(config["autoencoder"]["evaluate"]["footprint_fraction"])
    out = simulation_floors(read_galaxies(test), config["simulate"], int(config["seed"]), fraction, name=str(test))
    with atomic_path(floors) as tmp:
        tmp.write_text(json.dumps(out, indent=2) + "\n")
    log.info(
        "chi2 floors of %s: exact %.3f, smooth %.3f (footprint)",
        test,
        out["exact"]["chi2_per_pixel"],
        out["smooth"]["chi2_per_pixel"],
    )
    return out
