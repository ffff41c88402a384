r"""Stage-2 training: fit a :class:`~morphoflow.flow.model.ConditionalFlow` by maximum likelihood (rule ``train_flow``)."""

from __future__ import annotations

__all__ = ["run_train_flow", "train_conditional_flow"]

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..autoencoder.latents import read_latents
from ..training import TrainSettings, fit
from .evaluate import nll_per_dim
from .io import save_flow
from .model import ConditionalFlow, Standardizer, as_table, flow_hyper

log = logging.getLogger(__name__)


def _nll_loss(model: ConditionalFlow, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    t, c = batch[0], batch[1]
    dev = model.device
    t, c = t.to(dev), c.to(dev)
    # loss = negative log-likelihood in nats per target dimension (standardised target)
    nll = -model.log_prob_std(t, c if model.context_columns else None).mean() / model.features
    return {"loss": nll}


def _check_tables(target: np.ndarray, context: np.ndarray, val_target: np.ndarray, val_context: np.ndarray) -> None:
    if len(target) != len(context) or len(val_target) != len(val_context):
        raise ValueError("target and context tables must have the same number of rows")
    if val_target.shape[1] != target.shape[1] or val_context.shape[1] != context.shape[1]:
        raise ValueError("validation and training tables must have the same columns")


def _new_flow(
    flow_cfg: Mapping[str, Any], target: np.ndarray, context: np.ndarray, columns: Sequence[str], seed: int
) -> ConditionalFlow:
    r"""An untrained flow with the training table's standardisation and context ranges (init seeded by ``seed``)."""

    t_std = Standardizer.fit(target)
    c_std = Standardizer.fit(context) if context.shape[1] else Standardizer([], [])
    ranges = {col: (float(context[:, i].min()), float(context[:, i].max())) for i, col in enumerate(columns)}
    torch.manual_seed(seed)
    return ConditionalFlow(flow_cfg["kind"], target.shape[1], columns, flow_hyper(flow_cfg), t_std, c_std, ranges)


def _dataset(model: ConditionalFlow, t: np.ndarray, c: np.ndarray) -> torch.utils.data.TensorDataset:
    r"""Standardised (target, context) rows for :func:`morphoflow.training.fit`."""

    return torch.utils.data.TensorDataset(
        torch.as_tensor(model.target_std.transform(t.astype(np.float32))),
        torch.as_tensor(model.context_std.transform(c.astype(np.float32)) if c.shape[1] else c.astype(np.float32)),
    )


def _run_key(model: ConditionalFlow, target: np.ndarray, seed: int) -> dict[str, Any]:
    r"""What identifies a training run (a checkpoint made under another key is not resumed)."""

    return {
        "stage": "flow",
        "kind": model.kind,
        "hyper": json.dumps(model.hyper, sort_keys=True),
        "context": list(model.context_columns),
        "n_train": len(target),
        "features": int(target.shape[1]),
        "target_mean": [round(v, 6) for v in model.target_std.mean],
        "seed": int(seed),
    }


def train_conditional_flow(
    target: np.ndarray,
    context: np.ndarray,
    val_target: np.ndarray,
    val_context: np.ndarray,
    flow_cfg: Mapping[str, Any],
    seed: int,
    workdir: str | os.PathLike,
    history_path: str | os.PathLike | None = None,
    *,
    context_columns: Sequence[str],
    progress: bool = True,
) -> ConditionalFlow:
    r"""Fit a conditional flow to ``target`` (N, D) given ``context`` (N, K) by maximum likelihood.

    Arguments:
        target, context: Training table (raw units); standardised with their own statistics.
        val_target, val_context: Validation table (early stopping, best-weights selection).
        flow_cfg: A ``flow`` config section (defaults filled): ``kind``, its hyperparameters and ``train``.
        seed: Seed of the weight initialisation and of the training loop.
        workdir: Folder of the training checkpoints (resume).
        history_path: Optional CSV of the per-epoch history.
        context_columns: Names of the K context columns.

    Returns:
        The trained flow (best validation weights, on CPU, eval mode).
    """

    target, val_target = as_table(target, "target"), as_table(val_target, "val_target")
    context, val_context = as_table(context, "context"), as_table(val_context, "val_context")
    _check_tables(target, context, val_target, val_context)
    if len(context_columns) != context.shape[1]:
        raise ValueError(f"{len(context_columns)} context column names for {context.shape[1]} context columns")

    model = _new_flow(flow_cfg, target, context, context_columns, seed)
    settings = TrainSettings.from_config(flow_cfg["train"], seed)
    log.info(
        "training a '%s' flow: %d x %d target, %d context columns %s",
        model.kind,
        *target.shape,
        len(context_columns),
        list(context_columns),
    )
    result = fit(
        model,
        _nll_loss,
        _dataset(model, target, context),
        _dataset(model, val_target, val_context),
        settings,
        workdir,
        run_key=_run_key(model, target, seed),
        history_path=history_path,
        progress=progress,
    )
    model.load_state_dict(result.state_dict)
    model.cpu().eval()
    log.info(
        "flow trained: best val NLL %.4f nats/dim (standardised) after %d steps", result.best_val_loss, result.steps
    )
    return model


def run_train_flow(
    *,
    train: str | os.PathLike,
    val: str | os.PathLike,
    model: str | os.PathLike,
    history: str | os.PathLike,
    checkpoints: str | os.PathLike,
    config: Mapping[str, Any],
    progress: bool = True,
) -> ConditionalFlow:
    r"""Rule ``train_flow``: train the flow on latent files (``z_mean`` given the ``flow.context`` columns) and save it.

    Arguments:
        train, val: Latent files (``results/latents/{train,val}.h5``).
        model: Output flow file (:func:`~morphoflow.flow.io.save_flow`).
        history: Output per-epoch history (CSV).
        checkpoints: Checkpoint folder (kept across failed runs; a rerun resumes).
        config: ``{"flow": ..., "seed": ...}`` from the validated config.

    The saved meta carries the latent file's attributes (pixel scale, band, zero point, latent_dim,
    model) plus ``out_of_range`` (the default policy of :class:`morphoflow.Generator`).
    """

    flow_cfg = config["flow"]
    columns = list(flow_cfg["context"])
    lt, lv = read_latents(train), read_latents(val)
    z, c, vz, vc = lt.z_mean, lt.context(columns), lv.z_mean, lv.context(columns)
    cflow = train_conditional_flow(
        z, c, vz, vc, flow_cfg, int(config["seed"]), checkpoints, history, context_columns=columns, progress=progress
    )
    meta = dict(lt.attrs)
    meta.update(out_of_range=flow_cfg["out_of_range"], val_nll_per_dim=nll_per_dim(cflow, vz, vc), n_train=len(z))
    save_flow(model, cflow, meta)
    return cflow
