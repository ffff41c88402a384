r"""Stage-1 training: fit the configured autoencoder on the train/val galaxy files and save it.

Library side of the ``train_autoencoder`` rule. The model sees ``images / norm_scale`` (``norm_scale`` from
the training file, counts); its noise model is ``noise_sigma / norm_scale`` or
``noise_power / norm_scale²``.
"""

from __future__ import annotations

__all__ = ["fingerprint", "resolve_likelihood", "run_train_autoencoder"]

import hashlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..contract import GalaxySet, read_galaxies
from ..seeding import item_seed
from ..training import FitResult, TrainSettings, fit
from .io import build_autoencoder, save_autoencoder
from .objective import AutoencoderLoss, StampTensors, stamp_tensors

log = logging.getLogger(__name__)


def resolve_likelihood(name: str, gs: GalaxySet) -> str:
    r"""``auto`` → ``fourier`` if the data has a noise power spectrum, else ``pixel``."""

    if name == "auto":
        return "fourier" if gs.noise_power is not None else "pixel"
    if name not in ("pixel", "fourier"):
        raise ValueError(f"config key 'autoencoder.likelihood': must be auto|pixel|fourier, got {name!r}")
    return name


def fingerprint(gs: GalaxySet) -> str:
    r"""A content hash of a galaxy set's pixels, noise and ids (so a checkpoint never resumes on other data)."""

    h = hashlib.blake2b(digest_size=16)
    for arr in (gs.images, gs.psf, gs.noise_sigma, gs.ids, gs.noise_power):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _bank(a: torch.Tensor | None, b: torch.Tensor | None, na: int, nb: int) -> torch.Tensor | None:
    # one PSF / noise-power bank for train (indices 0..na-1) and val (na..na+nb-1)
    if a is None and b is None:
        return None
    if a is None or b is None:
        raise ValueError("dataset 'noise_power' is present in only one of the train and val files")
    if len(a) == 1 and len(b) == 1 and torch.equal(a, b):
        return a
    return torch.cat([a.expand(na, *a.shape[1:]), b.expand(nb, *b.shape[1:])])


def _read_splits(
    train: str | os.PathLike, val: str | os.PathLike
) -> tuple[GalaxySet, GalaxySet, StampTensors, StampTensors]:
    r"""The train and val galaxy sets and their tensors, normalised with the training file's ``norm_scale``."""

    gs_train, gs_val = read_galaxies(train), read_galaxies(val)
    if gs_train.images.shape[1:] != gs_val.images.shape[1:]:
        raise ValueError(
            f"{val}: dataset 'images' stamps {gs_val.images.shape[1:]} differ from {train} {gs_train.images.shape[1:]}"
        )
    st = stamp_tensors(gs_train, name=str(train))
    sv = stamp_tensors(gs_val, norm_scale=st.norm_scale, name=str(val))
    val_scale = gs_val.attrs.get("norm_scale")
    if val_scale is not None and not np.isclose(float(val_scale), st.norm_scale, rtol=1e-5):
        raise ValueError(
            f"{val}: attribute 'norm_scale' = {val_scale} differs from {train} ({st.norm_scale}); "
            "preprocess must normalise every split with the training split's constant"
        )
    return gs_train, gs_val, st, sv


def run_train_autoencoder(
    *,
    train: str | os.PathLike,
    val: str | os.PathLike,
    model: str | os.PathLike,
    history: str | os.PathLike,
    checkpoints: str | os.PathLike,
    config: Mapping[str, Any],
    progress: bool = True,
) -> FitResult:
    r"""Rule ``train_autoencoder``: train the configured autoencoder and write the model and its history.

    Arguments:
        train, val: Contract galaxy files with the ``norm_scale`` attribute (counts).
        model: Output model file (:func:`~morphoflow.autoencoder.io.save_autoencoder`).
        history: Output per-epoch history (CSV).
        checkpoints: Checkpoint folder (kept across failed runs; a rerun resumes).
        config: ``{"autoencoder": ..., "seed": ...}`` from the validated config.
    """

    cfg, seed = config["autoencoder"], int(config["seed"])
    gs_train, gs_val, st, sv = _read_splits(train, val)
    likelihood = resolve_likelihood(cfg["likelihood"], gs_train)
    n_train, n_val = len(st.x), len(sv.x)
    # items (x, sigma, bank index); a shared PSF / spectrum (bank of length 1) ignores the index
    train_set = TensorDataset(st.x, st.sigma, torch.arange(n_train))
    val_set = TensorDataset(sv.x, sv.sigma, torch.arange(n_val) + n_train)
    psf = _bank(st.psf, sv.psf, n_train, n_val)
    power = _bank(st.power, sv.power, n_train, n_val)

    image_shape = list(gs_train.images.shape[1:])
    torch.manual_seed(item_seed(seed, 0, "autoencoder-init"))
    net = build_autoencoder(cfg, image_shape)
    loss = AutoencoderLoss(psf, power, bool(cfg["psf_aware"]), likelihood, float(cfg["beta"]))
    settings = TrainSettings.from_config(cfg["train"], seed)
    n_params = sum(p.numel() for p in net.parameters())
    log.info(
        "training %s (%d parameters, latent_dim %d, likelihood %s, psf_aware %s) on %d galaxies %s, %d val",
        cfg["model"],
        n_params,
        net.latent_dim,
        likelihood,
        loss.psf_aware,
        n_train,
        image_shape,
        n_val,
    )
    run_key = {
        "config": {k: v for k, v in cfg.items() if k not in ("evaluate", "extract", "threads")},
        "seed": seed,
        "train": fingerprint(gs_train),
        "val": fingerprint(gs_val),
    }
    result = fit(
        net, loss, train_set, val_set, settings, checkpoints, run_key=run_key, history_path=history, progress=progress
    )
    meta = {
        "config": dict(cfg),
        "model": cfg["model"],
        "latent_dim": int(net.latent_dim),
        "psf_aware": loss.psf_aware,
        "likelihood": likelihood,
        "image_shape": image_shape,
        "norm_scale": st.norm_scale,
        "pixel_scale_arcsec": float(gs_train.attrs["pixel_scale_arcsec"]),
        "band": str(gs_train.attrs["band"]),
        "zeropoint_ab": float(gs_train.attrs["zeropoint_ab"]),
        "seed": seed,
        "n_parameters": int(n_params),
        "best_val_loss": float(result.best_val_loss),
        "steps": int(result.steps),
    }
    save_autoencoder(model, net, meta)
    log.info("wrote %s (best val loss %.5g after %d steps)", model, result.best_val_loss, result.steps)
    return result
