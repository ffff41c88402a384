r"""Latent extraction: encode a galaxy file with the trained autoencoder into a latent file.

The latent file (``docs/data-format.md``) holds ``z_mean`` (N, D) (posterior mean or AE code), ``z_logvar``
(N, D) for the VAE, the galaxy file's catalog with units, and its attributes plus ``latent_dim`` and ``model``.
"""

from __future__ import annotations

__all__ = ["LatentSet", "encode_galaxies", "read_latents", "run_extract_latents", "write_latents"]

import dataclasses
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..atomic import atomic_path
from ..contract import ContractError, load_dataset, open_h5, read_catalog, read_galaxies, write_catalog
from .io import check_stamps, load_autoencoder

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


@dataclasses.dataclass
class LatentSet:
    r"""The content of a latent file (``docs/data-format.md``).

    Attributes:
        z_mean: Posterior means or AE codes (N, D) float32.
        z_logvar: Posterior log-variances (N, D), or None (AE).
        catalog: The galaxy file's catalog columns (N,), with ``id``.
        units: Unit of each catalog column.
        attrs: File attributes (plain Python values).
        name: The file, for messages.
    """

    z_mean: np.ndarray
    z_logvar: np.ndarray | None
    catalog: dict[str, np.ndarray]
    units: dict[str, str]
    attrs: dict[str, Any]
    name: str = "<memory>"

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.catalog["id"], np.int64)

    def context(self, columns: Sequence[str], key: str = "flow.context") -> np.ndarray:
        r"""The catalog ``columns`` as a finite (N, K) float32 table; ``key`` names the config key that asked.

        Raises:
            ContractError: naming the file and the missing, malformed or non-finite column.
        """

        cols = []
        for col in columns:
            if col not in self.catalog:
                raise ContractError(f"{self.name}: dataset 'catalog/{col}' is missing (named in config key '{key}')")
            v = np.asarray(self.catalog[col], np.float64)
            if not np.isfinite(v).all():
                raise ContractError(f"{self.name}: dataset 'catalog/{col}' holds non-finite values")
            cols.append(v)
        if not cols:
            return np.zeros((len(self.z_mean), 0), np.float32)
        return np.stack(cols, axis=-1).astype(np.float32)


def read_latents(path: str | os.PathLike) -> LatentSet:
    r"""Read and check a latent file.

    Raises:
        ContractError: naming the file and the missing, malformed or non-finite dataset.
    """

    name = str(path)
    with open_h5(path) as f:
        for key in ("z_mean", "catalog"):
            if key not in f:
                raise ContractError(f"{name}: dataset '{key}' is missing")
        catalog, units = read_catalog(f["catalog"], name)
        z_mean = load_dataset(f, "z_mean", name)
        z_logvar = load_dataset(f, "z_logvar", name)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    if "id" not in catalog:
        raise ContractError(f"{name}: dataset 'catalog/id' is missing")
    if z_mean.ndim != 2 or len(z_mean) != len(catalog["id"]):
        raise ContractError(f"{name}: dataset 'z_mean' must be (N, D) with N = len(catalog/id), got {z_mean.shape}")
    if not np.isfinite(z_mean).all():
        raise ContractError(f"{name}: dataset 'z_mean' holds non-finite values")
    return LatentSet(z_mean, z_logvar, catalog, units, attrs, name)


def run_extract_latents(
    *,
    model: str | os.PathLike,
    galaxies: str | os.PathLike,
    latents: str | os.PathLike,
    config: Mapping[str, Any],
    device: str = "cpu",
    progress: bool = True,
) -> None:
    r"""Rule ``extract_latents``: encode a galaxy file with the trained autoencoder into a latent file.

    Arguments:
        model: The trained autoencoder file.
        galaxies: A contract galaxy file (a split); normalised with the model's ``norm_scale`` (counts).
        latents: Output latent file.
        config: ``{"autoencoder": {"extract": ...}}`` from the validated config.
    """

    net, meta = load_autoencoder(model, device=device)
    gs = read_galaxies(galaxies)
    check_stamps(meta, gs, galaxies, model)
    batch_size = int(config["autoencoder"]["extract"]["batch_size"])
    z_mean, z_logvar = encode_galaxies(net, gs.images, float(meta["norm_scale"]), batch_size, device, progress)
    write_latents(latents, z_mean, z_logvar, gs.catalog, gs.units, dict(gs.attrs), meta["model"])
    log.info("wrote %s: %d latents of dimension %d", latents, len(z_mean), z_mean.shape[1])
