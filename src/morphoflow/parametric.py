r"""The parametric baseline: a smooth GalSim profile of each galaxy at its catalog parameters.

The question users ask first: is a learned generator better than drawing the galaxy's profile in GalSim
at the same parameters? For each galaxy of a split the baseline draws

* **simulated data set** (``data.source: simulate``): the bulge + disk of the galaxy's catalog row with
  the clump light returned to the disk, i.e. the ``smooth`` oracle of :mod:`morphoflow.data.floors`
  (exact parameters, flux and shape; no clump positions). The observed image is GalSim's own
  galaxy ⊛ PSF ⊛ pixel when the stamps keep the simulation's PSF (``preprocess.target_psf`` null), else
  the PSF-free profile FFT-convolved with the file's PSF (as the generated sets are);
* **COSMOS** (``data.source: cosmos``): GalSim's own parametric fit of the galaxy
  (``COSMOSCatalog.makeGalaxy(index, gal_type="parametric")``, found by its IDENT in the unpacked training
  sample), drawn PSF-free (``no_pixel``: the file's PSF is the effective, pixel-convolved one) and
  FFT-convolved with the galaxy's PSF from the file;
* **other sources**: no profile parameters are known here, :func:`parametric_unavailable` says why.

Noise is drawn from each galaxy's noise model with per-galaxy seeds, as in :mod:`morphoflow.sampling`.
"""

from __future__ import annotations

__all__ = ["parametric_set", "parametric_unavailable"]

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .contract import ContractError, GalaxySet
from .data.floors import simulated_rows
from .data.simulate import Renderer
from .sampling import observe
from .seeding import item_seed


def parametric_unavailable(config: Mapping[str, Any]) -> str | None:
    r"""Why the baseline cannot be drawn for ``config["data"]["source"]`` (None: it can)."""
    source = config["data"]["source"]
    if source in ("simulate", "cosmos"):
        return None
    return f"data source '{source}' has no profile parameters of its galaxies"


def _smooth_draws(gs: GalaxySet, simulate: Mapping[str, Any], seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    r"""Noiseless observed (GalSim) and PSF-free smooth images (N, 1, H, W) of simulated galaxies."""
    renderer = Renderer(dict(simulate))
    obs, truth = [], []
    for row, knot_seed in simulated_rows(gs, renderer, seed, name):
        o, t = renderer.draw(dict(row, knot_fraction=0.0), knot_seed)
        obs.append(o)
        truth.append(t)
    return np.stack(obs)[:, None].astype(np.float32), np.stack(truth)[:, None].astype(np.float32)


def _cosmos_truth(gs: GalaxySet, config: Mapping[str, Any], tarball: str | os.PathLike, name: str) -> np.ndarray:
    r"""PSF-free parametric fits (N, 1, H, W) of COSMOS galaxies (by IDENT) from the training-sample tarball."""
    from .data.cosmos import extract_sample, open_catalog

    cosmos, dl = config["cosmos"], config["download"]
    # checked against the recorded <tarball>.sha256 (the pin was checked against it when the DAG loaded)
    folder = extract_sample(tarball, cosmos["extract_dir"])
    cat = open_catalog(folder, dl["sample"], cosmos)
    index = {int(cat.real_cat.ident[cat.getOrigIndex(i)]): i for i in range(cat.nobjects)}
    h, w = gs.images.shape[-2:]
    truth = np.empty((len(gs), 1, h, w), np.float32)
    for k, gid in enumerate(gs.ids):
        if int(gid) not in index:
            raise ContractError(f"{name}: galaxy id {int(gid)} is not an IDENT of the COSMOS sample after its cuts")
        gal = cat.makeGalaxy(index[int(gid)], gal_type="parametric")
        opts = dict(nx=w, ny=h, scale=gs.pixel_scale, method="no_pixel", use_true_center=False)
        truth[k, 0] = gal.drawImage(**opts).array
    return truth


def parametric_set(
    gs: GalaxySet, config: Mapping[str, Any], name: str = "<memory>", cosmos: str | os.PathLike | None = None
) -> GalaxySet:
    r"""The parametric counterparts of the galaxies ``gs`` (same ids, catalog, PSF and noise model).

    Arguments:
        gs: A split of the data set (contract file contents).
        config: ``{"data": {"source"}, "simulate": ..., "preprocess": {"target_psf"}, "seed"}``; for COSMOS also
            ``cosmos`` and ``download`` (``sample``).
        name: File name for error messages.
        cosmos: The COSMOS training-sample tarball (source ``cosmos`` only; its extraction is reused).

    Raises:
        ValueError: the source has no profile parameters (:func:`parametric_unavailable`).
    """
    why = parametric_unavailable(config)
    if why is not None:
        raise ValueError(f"parametric baseline unavailable: {why}")
    seed = int(config["seed"])
    noise_seeds = [item_seed(seed, int(i), "sample-parametric-noise") for i in gs.ids]
    if config["data"]["source"] == "cosmos":
        if cosmos is None:
            raise ValueError("parametric baseline of COSMOS galaxies: the training-sample tarball is needed")
        truth = _cosmos_truth(gs, config, cosmos, name)
        images = observe(truth, gs.psf, gs.noise_sigma, gs.noise_power, noise_seeds)
        return _galaxy_set(gs, images, truth)
    obs, truth = _smooth_draws(gs, config["simulate"], seed, name)
    if config["preprocess"]["target_psf"] is None:
        h, w = obs.shape[-2:]
        delta = np.zeros((1, 1, h, w), np.float32)
        delta[0, 0, h // 2, w // 2] = 1.0  # noise only: GalSim already convolved with the PSF
        images = observe(obs, delta, gs.noise_sigma, gs.noise_power, noise_seeds)
    else:
        images = observe(truth, gs.psf, gs.noise_sigma, gs.noise_power, noise_seeds)
    return _galaxy_set(gs, images, truth)


def _galaxy_set(gs: GalaxySet, images: np.ndarray, truth: np.ndarray) -> GalaxySet:
    return GalaxySet(
        images=images,
        psf=gs.psf,
        noise_sigma=gs.noise_sigma,
        catalog=dict(gs.catalog),
        attrs=dict(gs.attrs, source="parametric"),
        units=dict(gs.units),
        truth=truth,
        noise_power=gs.noise_power,
    )
