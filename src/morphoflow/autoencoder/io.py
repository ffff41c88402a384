r"""Build, save and load stage-1 autoencoders (plain state dicts + metadata, ``weights_only=True`` loading)."""

from __future__ import annotations

__all__ = [
    "MODEL_FORMAT",
    "MODEL_KINDS",
    "add_detail_level",
    "build_autoencoder",
    "check_stamps",
    "load_autoencoder",
    "save_autoencoder",
]

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..checkpoint import ModelFileError, load_torch_file, save_torch_file
from ..contract import ContractError, GalaxySet
from .models import AE, VAE, StampAutoencoder

MODEL_KINDS: dict[str, type[StampAutoencoder]] = {"vae": VAE, "ae": AE}
MODEL_FORMAT = "morphoflow-autoencoder-v1"


def build_autoencoder(
    config: Mapping[str, Any], image_shape: Sequence[int], *, detail: bool | None = None
) -> StampAutoencoder:
    r"""Build the autoencoder of an ``autoencoder`` config block (defaults filled) for stamps (C, H, W).

    Uses the keys ``model`` (vae | ae), ``latent_dim``, ``widths``, ``blocks``, ``psf_aware``, ``asinh_scale``,
    ``patch`` and ``detail`` (the two-level model's detail level, built when ``detail.enabled``, or when
    ``detail`` is passed, as it says; a block without the key, as in older model files, has none).
    """

    kind = config["model"]
    if kind not in MODEL_KINDS:
        raise ValueError(f"config key 'autoencoder.model': unknown model {kind!r} (one of {sorted(MODEL_KINDS)})")
    blocks = config["blocks"]
    model = MODEL_KINDS[kind](
        image_shape=[int(v) for v in image_shape],
        latent_dim=int(config["latent_dim"]),
        widths=[int(v) for v in config["widths"]],
        blocks=[int(v) for v in blocks] if isinstance(blocks, (list, tuple)) else int(blocks),
        psf_aware=bool(config["psf_aware"]),
        asinh_scale=float(config["asinh_scale"]),
        patch=int(config["patch"]),
    )
    dcfg = config.get("detail")  # absent in model files written before the detail level existed
    if detail if detail is not None else bool(dcfg and dcfg["enabled"]):
        add_detail_level(model, dcfg)
    return model


def add_detail_level(model: StampAutoencoder, detail_cfg: Mapping[str, Any]) -> None:
    r"""Attach the detail level described by an ``autoencoder.detail`` block to ``model``."""

    model.add_detail(
        channels=int(detail_cfg["channels"]),
        width=int(detail_cfg["width"]),
        blocks=int(detail_cfg["blocks"]),
        components=int(detail_cfg["components"]),
    )


def save_autoencoder(path: str | os.PathLike, model: StampAutoencoder, meta: Mapping[str, Any]) -> None:
    r"""Write the model's weights and ``meta`` to ``path`` atomically.

    ``meta`` must hold plain values only (str, int, float, bool, None, lists, dicts) and at least
    ``config`` (the ``autoencoder`` block) and ``image_shape`` [C, H, W]; ``model``, ``latent_dim`` and
    ``psf_aware`` are filled from the model if absent. Callers add ``norm_scale`` (counts),
    ``pixel_scale_arcsec``, ``band``, ``zeropoint_ab`` and ``likelihood``.
    """

    meta = dict(meta)
    for key in ("config", "image_shape"):
        if key not in meta:
            raise ValueError(f"save_autoencoder: meta needs '{key}'")
    meta.setdefault("model", model.kind)
    meta.setdefault("latent_dim", int(model.latent_dim))
    meta.setdefault("psf_aware", bool(meta["config"]["psf_aware"]))
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    save_torch_file(path, MODEL_FORMAT, {"state_dict": state, "meta": meta})


def load_autoencoder(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[StampAutoencoder, dict[str, Any]]:
    r"""Load a model written by :func:`save_autoencoder`: returns ``(model in eval mode, meta)``.

    Raises:
        ModelFileError: the file is missing, corrupted or not a morphoflow autoencoder (names the file).
    """

    blob = load_torch_file(path, MODEL_FORMAT, what="morphoflow autoencoder")
    try:
        meta = blob["meta"]
        config = dict(meta["config"], model=meta["model"], psf_aware=meta["psf_aware"], latent_dim=meta["latent_dim"])
        model = build_autoencoder(config, meta["image_shape"])
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: model metadata and weights do not match ({err})") from err
    return model.to(device).eval(), meta


def check_stamps(
    meta: Mapping[str, Any], gs: GalaxySet, data_path: str | os.PathLike, model_path: str | os.PathLike
) -> None:
    r"""Raise :class:`ContractError` if the stamps of ``gs`` (from ``data_path``) are not the model's (C, H, W)."""

    if list(gs.images.shape[1:]) != list(meta["image_shape"]):
        raise ContractError(
            f"{data_path}: dataset 'images' stamps {list(gs.images.shape[1:])} do not match the model's "
            f"{list(meta['image_shape'])} ({model_path})"
        )
