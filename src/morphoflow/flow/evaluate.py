r"""Stage-2 test figures: the flow's negative log-likelihood on the test latents (rule ``evaluate_flow``)."""

from __future__ import annotations

__all__ = ["nll_per_dim", "run_evaluate_flow"]

import json
import logging
import math
import os
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..autoencoder.latents import read_latents
from ..contract import ContractError
from .io import load_flow
from .model import ConditionalFlow, as_table

log = logging.getLogger(__name__)


@torch.no_grad()
def nll_per_dim(flow: ConditionalFlow, target: np.ndarray, context: np.ndarray, batch_size: int = 4096) -> float:
    r"""Mean negative log-likelihood in nats per target dimension, on the **standardised** target.

    Add ``mean(log target_std.std)`` for the value in the raw target units.
    """

    flow.eval()
    target = as_table(target, "target")
    context = as_table(context, "context") if np.asarray(context).size else np.zeros((len(target), 0), np.float32)
    dev = flow.device
    total = 0.0
    for i in range(0, len(target), batch_size):
        t = flow.target_std.transform(torch.as_tensor(target[i : i + batch_size], device=dev))
        c = None
        if flow.context_columns:
            c = flow.context_std.transform(torch.as_tensor(context[i : i + batch_size], device=dev))
        total += float(-flow.log_prob_std(t, c).double().sum())
    return total / (len(target) * flow.features)


def run_evaluate_flow(
    *, model: str | os.PathLike, test: str | os.PathLike, metrics: str | os.PathLike
) -> dict[str, Any]:
    r"""Rule ``evaluate_flow``: test NLL (nats/dim) of the flow on the test latent file, written as JSON.

    Keys: ``test_nll_per_dim`` (standardised target), ``test_nll_per_dim_latent`` (raw latent units),
    ``n_test``, ``kind``, ``features``, ``context``, ``out_of_range_fraction`` (test rows outside the
    training range of any context column).
    """

    cflow = load_flow(model)
    lt = read_latents(test)
    z, c = lt.z_mean, lt.context(cflow.context_columns)
    if z.shape[1] != cflow.features:
        raise ContractError(f"{test}: dataset 'z_mean' has {z.shape[1]} dims, the flow {cflow.features} ({model})")
    nll = nll_per_dim(cflow, z, c)
    if not math.isfinite(nll):
        raise ValueError(f"{test}: the test NLL is not finite ({nll})")
    outside = np.zeros(len(z), bool)
    for i, col in enumerate(cflow.context_columns):
        lo, hi = cflow.context_range[col]
        outside |= (c[:, i] < lo) | (c[:, i] > hi)
    figures = {
        "test_nll_per_dim": nll,
        "test_nll_per_dim_latent": nll + float(np.mean(np.log(cflow.target_std.std))),
        "n_test": len(z),
        "kind": cflow.kind,
        "features": cflow.features,
        "context": list(cflow.context_columns),
        "out_of_range_fraction": float(outside.mean()),
    }
    with atomic_path(metrics) as tmp:
        tmp.write_text(json.dumps(figures, indent=2) + "\n")
    log.info("test NLL %.4f nats/dim (standardised) on %d galaxies", nll, len(z))
    return figures
