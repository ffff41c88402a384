r"""Stage-1 training: fit the configured autoencoder on the train/val galaxy files and save it.

Library side of the ``train_autoencoder`` rule. The model sees ``images / norm_scale`` (``norm_scale`` from
the training file, counts); its noise model is ``noise_sigma / norm_scale`` or
``noise_power / norm_scale²``.
"""

from __future__ import annotations

__all__ = ["fingerprint", "resolve_likelihood", "run_train_autoencoder"]

import dataclasses
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from ..atomic import atomic_path
from ..contract import GalaxySet, read_galaxies
from ..seeding import item_seed
from ..training import FitResult, TrainSettings, fit
from .io import add_detail_level, build_autoencoder, save_autoencoder
from .models import StampAutoencoder
from .objective import AutoencoderLoss, DetailLoss, StampTensors, stamp_tensors

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


@dataclasses.dataclass
class _Data:
    r"""The training and validation items of stage 1 and their loss."""

    gs_train: GalaxySet
    st: StampTensors
    train_set: TensorDataset  # items (x, sigma, bank index)
    val_set: TensorDataset
    loss: AutoencoderLoss
    fingerprints: dict[str, str]


def _prepare(train: str | os.PathLike, val: str | os.PathLike, cfg: Mapping[str, Any]) -> _Data:
    gs_train, gs_val, st, sv = _read_splits(train, val)
    n_train, n_val = len(st.x), len(sv.x)
    # a shared PSF / spectrum (bank of length 1) ignores the index
    psf = _bank(st.psf, sv.psf, n_train, n_val)
    power = _bank(st.power, sv.power, n_train, n_val)
    likelihood = resolve_likelihood(cfg["likelihood"], gs_train)
    return _Data(
        gs_train=gs_train,
        st=st,
        train_set=TensorDataset(st.x, st.sigma, torch.arange(n_train)),
        val_set=TensorDataset(sv.x, sv.sigma, torch.arange(n_val) + n_train),
        loss=AutoencoderLoss(psf, power, bool(cfg["psf_aware"]), likelihood, float(cfg["beta"])),
        fingerprints={"train": fingerprint(gs_train), "val": fingerprint(gs_val)},
    )


def _train_global(
    data: _Data,
    cfg: Mapping[str, Any],
    seed: int,
    workdir: str | os.PathLike,
    history: str | os.PathLike,
    progress: bool,
) -> tuple[StampAutoencoder, FitResult]:
    r"""Stage A: the encoder, the global code and the smooth decoder, trained as one (β-)VAE or AE."""

    image_shape = list(data.gs_train.images.shape[1:])
    torch.manual_seed(item_seed(seed, 0, "autoencoder-init"))
    net = build_autoencoder(cfg, image_shape, detail=False)
    log.info(
        "training %s (%d parameters, latent_dim %d, likelihood %s, psf_aware %s) on %d galaxies %s, %d val",
        cfg["model"],
        sum(p.numel() for p in net.parameters()),
        net.latent_dim,
        data.loss.likelihood,
        data.loss.psf_aware,
        len(data.train_set),
        image_shape,
        len(data.val_set),
    )
    omit = ("evaluate", "extract", "threads", "detail")
    run_key = {"config": {k: v for k, v in cfg.items() if k not in omit}, "seed": seed, **data.fingerprints}
    settings = TrainSettings.from_config(cfg["train"], seed)
    result = fit(net, data.loss, data.train_set, data.val_set, settings, workdir, run_key=run_key,
                 history_path=history, progress=progress)  # fmt: skip
    return net, result


@torch.no_grad()
def smooth_logits(net: StampAutoencoder, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    r"""Coarse-grid logits of the posterior-mean (smooth) decoding of normalised stamps ``x`` (N, C, H, W)."""

    net.eval()
    out = [net.decoder.logits(net.encode(x[i : i + batch_size])[0]) for i in range(0, len(x), batch_size)]
    return torch.cat(out).float().contiguous()


def _train_detail(
    net: StampAutoencoder,
    data: _Data,
    cfg: Mapping[str, Any],
    seed: int,
    workdir: Path,
    global_fit: FitResult,
    progress: bool,
) -> FitResult:
    r"""Stage B: the detail level on the frozen global level (:class:`~.objective.DetailLoss`)."""

    dcfg = cfg["detail"]
    for p in net.parameters():
        p.requires_grad_(False)
    torch.manual_seed(item_seed(seed, 0, "detail-init"))
    add_detail_level(net, dcfg)
    train_set = TensorDataset(*data.train_set.tensors, smooth_logits(net, data.train_set.tensors[0]))
    val_set = TensorDataset(*data.val_set.tensors, smooth_logits(net, data.val_set.tensors[0]))
    loss = DetailLoss(data.loss, dcfg["beta"], dcfg["beta_start"], dcfg["hold_fraction"], dcfg["ramp_fraction"])
    log.info("training the detail level (%d parameters, %d numbers per cell on a %dx%d grid)",
             sum(p.numel() for p in net.detail.parameters()), net.detail.channels, *net.detail_grid)  # fmt: skip
    run_key = {"detail": dict(dcfg), "global_steps": global_fit.steps, "global_val": global_fit.best_val_loss,
               "seed": seed, **data.fingerprints}  # fmt: skip
    settings = TrainSettings.from_config(dcfg["train"], seed)
    return fit(net, loss, train_set, val_set, settings, workdir / "detail", run_key=run_key,
               history_path=workdir / "detail" / "history.csv", progress=progress)  # fmt: skip


#: Final validation KL of the detail map (nats per galaxy) below which it carries next to nothing.
COLLAPSED_KL = 1.0


def _warn_if_collapsed(history: pd.DataFrame) -> None:
    r"""Say in the log when the detail map collapsed to its prior (the model is then the one-level one)."""

    kl = float(history["val_kl"].iloc[-1]) if "val_kl" in history and len(history) else float("nan")
    if kl < COLLAPSED_KL:
        log.warning(
            "the detail map collapsed to its prior (validation KL %.3g nats per galaxy): the model decodes "
            "smooth galaxies like the one-level model; see docs/substructure.md (fragile training) and try "
            "a lower autoencoder.detail.beta_start or autoencoder.detail.train.lr",
            kl,
        )


def _write_history(path: str | os.PathLike, parts: dict[str, pd.DataFrame]) -> None:
    r"""One history file for both levels, a ``level`` column telling them apart."""

    frames = [df.assign(level=level) for level, df in parts.items()]
    with atomic_path(path) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)


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

    With ``autoencoder.detail.enabled`` training has two stages: the global level (encoder, global code,
    smooth decoder), then the detail level on it, frozen (:mod:`morphoflow.autoencoder.detail`).

    Arguments:
        train, val: Contract galaxy files with the ``norm_scale`` attribute (counts).
        model: Output model file (:func:`~morphoflow.autoencoder.io.save_autoencoder`).
        history: Output per-epoch history (CSV; column ``level``: ``global`` or ``detail``).
        checkpoints: Checkpoint folder (kept across failed runs; a rerun resumes).
        config: ``{"autoencoder": ..., "seed": ...}`` from the validated config.

    Returns:
        The fit of the last stage.
    """

    cfg, seed = config["autoencoder"], int(config["seed"])
    data = _prepare(train, val, cfg)
    workdir = Path(checkpoints)
    net, result = _train_global(data, cfg, seed, workdir, history, progress)
    parts = {"global": result.history}
    if cfg["detail"]["enabled"]:
        result = _train_detail(net, data, cfg, seed, workdir, result, progress)
        parts["detail"] = result.history
        _warn_if_collapsed(result.history)
    _write_history(history, parts)
    save_autoencoder(model, net, _meta(net, cfg, data, seed, result))
    log.info("wrote %s (best val loss %.5g after %d steps)", model, result.best_val_loss, result.steps)
    return result


def _meta(net: StampAutoencoder, cfg: Mapping[str, Any], data: _Data, seed: int, result: FitResult) -> dict:
    attrs = data.gs_train.attrs
    return {
        "config": dict(cfg),
        "model": cfg["model"],
        "latent_dim": int(net.latent_dim),
        "psf_aware": data.loss.psf_aware,
        "likelihood": data.loss.likelihood,
        "image_shape": list(data.gs_train.images.shape[1:]),
        "norm_scale": data.st.norm_scale,
        "pixel_scale_arcsec": float(attrs["pixel_scale_arcsec"]),
        "band": str(attrs["band"]),
        "zeropoint_ab": float(attrs["zeropoint_ab"]),
        "seed": seed,
        "detail": net.detail is not None,
        "n_parameters": sum(p.numel() for p in net.parameters()),
        "best_val_loss": float(result.best_val_loss),
        "steps": int(result.steps),
    }
