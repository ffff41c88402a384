r"""Build, save and load stage-1 autoencoders (plain state dicts + metadata, ``weights_only=True`` loading)."""

from __future__ import annotations

__all__ = ["MODEL_KINDS", "ModelFileError", "build_autoencoder", "save_autoencoder", "load_autoencoder"]

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path
from .ae import AE
from .vae import VAE

MODEL_KINDS: dict[str, type[nn.Module]] = {"vae": VAE, "ae": AE}
MODEL_FORMAT = "morphoflow-autoencoder-v1"


class ModelFileError(RuntimeError):
    r"""A model file is corrupted or not a morphoflow autoencoder; the message names the file."""


def _blocks_value(value: Any) -> int | list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else int(value)


def build_autoencoder(config: dict[str, Any], image_shape: Sequence[int]) -> nn.Module:
    r"""Build the autoencoder described by the config's ``autoencoder`` block for stamps (C, H, W).

    Uses the keys ``model`` (vae | ae), ``latent_dim``, ``widths``, ``blocks``, ``psf_aware``, ``asinh_scale`` and ``patch``.
    """

    kind = config.get("model", "vae")
    if kind not in MODEL_KINDS:
        raise ValueError(f"config key 'autoencoder.model': unknown model {kind!r} (one of {sorted(MODEL_KINDS)})")
    return MODEL_KINDS[kind](
        image_shape=[int(v) for v in image_shape],
        latent_dim=int(config.get("latent_dim", 16)),
        widths=[int(v) for v in config.get("widths", (16, 32, 64, 64))],
        blocks=_blocks_value(config.get("blocks", 1)),
        psf_aware=bool(config.get("psf_aware", True)),
        asinh_scale=float(config.get("asinh_scale", 1.0)),
        patch=int(config.get("patch", 1)),
    )


def save_autoencoder(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any]) -> None:
    r"""Write the model's weights and ``meta`` to ``path`` atomically.

    ``meta`` must hold plain values only (str, int, float, bool, None, lists, dicts) and at least
    ``config`` (the ``autoencoder`` block), ``image_shape`` [C, H, W]; ``model``, ``latent_dim`` and
    ``psf_aware`` are filled from the model if absent. Callers add ``norm_scale`` (counts),
    ``pixel_scale_arcsec``, ``band``, ``zeropoint_ab`` and ``likelihood``.
    """

    meta = dict(meta)
    for key in ("config", "image_shape"):
        if key not in meta:
            raise ValueError(f"save_autoencoder: meta needs '{key}'")
    meta.setdefault("model", getattr(model, "kind", meta["config"].get("model")))
    meta.setdefault("latent_dim", int(model.latent_dim))
    meta.setdefault("psf_aware", bool(meta["config"].get("psf_aware", True)))
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": MODEL_FORMAT, "state_dict": state, "meta": meta}, tmp)


def load_autoencoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    r"""Load a model written by :func:`save_autoencoder`: returns ``(model in eval mode, meta)``.

    Raises:
        ModelFileError: the file is missing, corrupted or not a morphoflow autoencoder (names the file).
    """

    if not os.path.exists(path):
        raise ModelFileError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ModelFileError(f"{path}: corrupted or unreadable model file ({type(err).__name__}: {err})") from err
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a morphoflow autoencoder file (missing format '{MODEL_FORMAT}')")
    meta = blob["meta"]
    try:
        config = dict(meta["config"], model=meta["model"], psf_aware=meta["psf_aware"], latent_dim=meta["latent_dim"])
        model = build_autoencoder(config, meta["image_shape"])
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise ModelFileError(f"{path}: model metadata and weights do not match ({err})") from err
    return model.to(device).eval(), meta
