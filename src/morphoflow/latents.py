r"""Latent extraction: encode a galaxy file with the trained autoencoder into a latent file.

The latent file (``docs/data-format.md``) holds ``z_mean`` (N, D) (posterior mean or AE code), ``z_logvar``
(N, D) for the VAE, the galaxy file's catalog with units, and its attributes plus ``latent_dim`` and ``model``.
"""

from __future__ import annotations

__all__ = ["encode_galaxies", "write_latents", "read_latents", "extract_latents"]

import logging
import os
import sys
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .atomic import atomic_path
from .contract import ContractError, read_catalog, read_galaxies, write_catalog
from .models import load_autoencoder

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_galaxies(
    model: nn.Module,
    images: np.ndarray,
    norm_scale: float,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Encode stamps (N, C, H, W) in counts: returns ``z_mean`` (N, D) and ``z_logvar`` (N, D) or None (AE)."""

    model = model.to(device).eval()
    means, logvars = [], []
    for start in tqdm(range(0, len(images), batch_size), file=sys.stderr, disable=not progress, desc="encode"):
        x = torch.from_numpy(np.asarray(images[start : start + batch_size], np.float32) / norm_scale).to(device)
        mu, logvar = model.encode(x)
        means.append(mu.float().cpu().numpy())
        if logvar is not None:
            logvars.append(logvar.float().cpu().numpy())
    z_mean = np.concatenate(means).astype(np.float32)
    z_logvar = np.concatenate(logvars).astype(np.float32) if logvars else None
    return z_mean, z_logvar


def write_latents(
    path: str | os.PathLike,
    z_mean: np.ndarray,
    z_logvar: np.ndarray | None,
    catalog: dict[str, np.ndarray],
    units: dict[str, str],
    attrs: dict[str, Any],
    model_kind: str,
) -> None:
    r"""Write a latent file atomically (layout of ``docs/data-format.md``)."""

    n, d = z_mean.shape
    if len(catalog.get("id", ())) != n:
        raise ContractError(f"{path}: catalog 'id' must have {n} rows like 'z_mean'")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("z_mean", data=z_mean.astype(np.float32))
        if z_logvar is not None:
            f.create_dataset("z_logvar", data=z_logvar.astype(np.float32))
        write_catalog(f.create_group("catalog"), catalog, units)
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["latent_dim"] = int(d)
        f.attrs["model"] = str(model_kind)


def read_latents(path: str | os.PathLike) -> dict[str, Any]:
    r"""Read a latent file: ``{"z_mean", "z_logvar" (or None), "catalog", "units", "attrs"}``."""

    name = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ContractError(f"{name}: not a readable HDF5 file ({err})") from err
    with f:
        for key in ("z_mean", "catalog"):
            if key not in f:
                raise ContractError(f"{name}: dataset '{key}' is missing")
        catalog, units = read_catalog(f["catalog"], name)
        out = {
            "z_mean": f["z_mean"][()],
            "z_logvar": f["z_logvar"][()] if "z_logvar" in f else None,
            "catalog": catalog,
            "units": units,
            "attrs": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()},
        }
    if out["z_mean"].ndim != 2 or len(out["z_mean"]) != len(catalog.get("id", ())):
        raise ContractError(f"{name}: dataset 'z_mean' must be (N, D) with N = len(catalog/id)")
    return out


def extract_latents(
    model_path: str | os.PathLike,
    galaxies_path: str | os.PathLike,
    out_path: str | os.PathLike,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = True,
) -> None:
    r"""Encode ``galaxies_path`` with the model at ``model_path`` and write the latent file ``out_path``.

    The images are normalised with the model's ``norm_scale`` (counts), the one it was trained with.
    """

    model, meta = load_autoencoder(model_path, device=device)
    gs = read_galaxies(galaxies_path)
    if list(gs.images.shape[1:]) != list(meta["image_shape"]):
        raise ContractError(
            f"{galaxies_path}: dataset 'images' stamps {list(gs.images.shape[1:])} do not match the model's "
            f"{meta['image_shape']} ({model_path})"
        )
    z_mean, z_logvar = encode_galaxies(model, gs.images, float(meta["norm_scale"]), batch_size, device, progress)
    attrs = dict(gs.attrs)
    write_latents(out_path, z_mean, z_logvar, gs.catalog, gs.units, attrs, meta["model"])
    log.info("wrote %s: %d latents of dimension %d", out_path, len(z_mean), z_mean.shape[1])
