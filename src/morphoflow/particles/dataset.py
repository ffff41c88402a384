r"""Flow tables for star-particle mode: one row per star, target = its features, context = its galaxy's.

Target (D = 10): ``x, y, z`` (kpc), ``vx, vy, vz`` (km/s), ``log10 Z``, ``[Fe/H]``, ``[O/Fe]`` (dex),
``age`` (Gyr); the total metallicity is learnt in log, as GalacticFlow does. Context: the galaxy's global
parameters (``particles.context``, columns of the star file's catalog) and, for the ``latent`` variant,
its image latent ``z_mean`` (stage 1, ``results/latents/{split}.h5``, read by
:func:`morphoflow.autoencoder.latents.read_latents`) matched by ``catalog/id``.
The flow standardises both with training-split statistics (:class:`morphoflow.flow.Standardizer`).

The train/val/test split is the image pipeline's (``preprocess`` hashes the id): a galaxy belongs to the
split of the latent file that holds it, so the galaxies held out from the autoencoder are held out from
the flow as well.
"""

from __future__ import annotations

__all__ = [
    "TARGET_COLUMNS",
    "VARIANTS",
    "build_table",
    "context_columns",
    "galaxy_contexts",
    "stars_to_target",
    "target_to_stars",
]

from collections.abc import Sequence

import numpy as np

from ..contract import ContractError
from ..seeding import item_rng
from .io import STAR_COLUMNS, StarSet

TARGET_COLUMNS: tuple[str, ...] = ("x", "y", "z", "vx", "vy", "vz", "logZ", "feh", "ofe", "age")

#: Context variants: ``latent`` = global parameters + image latent; ``global`` = global parameters only.
VARIANTS: tuple[str, ...] = ("latent", "global")

_Z_FLOOR = 1e-12


def stars_to_target(stars: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    r"""(N, 10) float32 flow target from star rows with named ``columns`` (Z -> log10 Z)."""

    columns = tuple(columns)
    out = np.stack([stars[:, columns.index(c)] for c in STAR_COLUMNS], 1).astype(np.float64)
    iz = STAR_COLUMNS.index("Z")
    out[:, iz] = np.log10(np.maximum(out[:, iz], _Z_FLOOR))
    return out.astype(np.float32)


def target_to_stars(target: np.ndarray) -> np.ndarray:
    r"""Inverse of :func:`stars_to_target`: (N, 10) in :data:`~morphoflow.particles.io.STAR_COLUMNS` order, physical units."""

    out = np.asarray(target, np.float64).copy()
    iz = STAR_COLUMNS.index("Z")
    out[:, iz] = 10 ** out[:, iz]
    return out


def context_columns(variant: str, global_keys: Sequence[str], latent_dim: int) -> list[str]:
    r"""Names of the context columns: the global parameters, then ``z0 .. z{D-1}`` for the ``latent`` variant."""

    if variant not in VARIANTS:
        raise ValueError(f"unknown particle-flow variant '{variant}' (choose from {list(VARIANTS)})")
    cols = list(global_keys)
    if variant == "latent":
        cols += [f"z{i}" for i in range(latent_dim)]
    return cols


def galaxy_contexts(
    ss: StarSet,
    latent_ids: np.ndarray,
    latents: np.ndarray,
    variant: str,
    global_keys: Sequence[str],
    name: str = "stars",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    r"""Context rows of the galaxies listed in a latent file.

    Returns:
        ``rows`` (G,) indices into ``ss`` of those galaxies (in latent-file order, galaxies absent from the
        star file are skipped), ``context`` (G, K) float32 and the K column names.
    """

    for key in global_keys:
        if key not in ss.catalog:
            raise ContractError(f"{name}: dataset 'catalog/{key}' is missing (named in config key 'particles.context')")
    row_of = {int(i): r for r, i in enumerate(ss.ids)}
    keep = [k for k, i in enumerate(latent_ids) if int(i) in row_of]
    rows = np.array([row_of[int(latent_ids[k])] for k in keep], dtype=np.int64)
    cols = [np.asarray(ss.catalog[key], np.float64)[rows] for key in global_keys]
    ctx = np.stack(cols, 1) if cols else np.zeros((len(rows), 0))
    if variant == "latent":
        ctx = np.concatenate([ctx, latents[keep]], 1)
    return rows, ctx.astype(np.float32), context_columns(variant, global_keys, latents.shape[1])


def build_table(
    ss: StarSet,
    rows: np.ndarray,
    contexts: np.ndarray,
    max_stars: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Stack the stars of galaxies ``rows`` with their galaxy's context repeated per star.

    Arguments:
        max_stars: If set, at most this many stars per galaxy (a random subset drawn with
            ``item_rng(seed, id, "particles.subsample")``).

    Returns:
        ``target`` (N, 10) float32, ``context`` (N, K) float32 and ``galaxy`` (N,) int64, the galaxy id of each row.
    """

    targets, ctxs, gids = [], [], []
    for r, c in zip(rows, contexts, strict=True):
        stars = ss.galaxy(int(r))
        gid = int(ss.ids[r])
        if max_stars is not None and len(stars) > max_stars:
            pick = np.sort(item_rng(seed, gid, "particles.subsample").choice(len(stars), max_stars, replace=False))
            stars = stars[pick]
        targets.append(stars_to_target(stars, ss.columns))
        ctxs.append(np.repeat(c[None], len(stars), 0))
        gids.append(np.full(len(stars), gid, np.int64))
    if not targets:
        raise ContractError("no galaxy of the star file is listed in the latent file (ids do not match)")
    return np.concatenate(targets), np.concatenate(ctxs).astype(np.float32), np.concatenate(gids)
