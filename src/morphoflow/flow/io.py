r"""Save and load a trained :class:`~morphoflow.flow.model.ConditionalFlow` (``weights_only=True``)."""

from __future__ import annotations

__all__ = ["FLOW_FORMAT", "FLOW_WHAT", "load_flow", "save_flow"]

import os
from collections.abc import Mapping
from typing import Any

import torch

from ..checkpoint import ModelFileError, load_torch_file, plain, save_torch_file
from .model import ConditionalFlow, Standardizer

FLOW_FORMAT = "morphoflow-conditional-flow"
FLOW_VERSION = 1
FLOW_WHAT = "morphoflow conditional-flow"  # what a flow file is, in messages


def save_flow(path: str | os.PathLike, cflow: ConditionalFlow, meta: Mapping[str, Any] | None = None) -> None:
    r"""Save a flow (weights, kind, hyperparameters, standardisation, context ranges, ``meta``) atomically."""

    save_torch_file(
        path,
        FLOW_FORMAT,
        {
            "version": FLOW_VERSION,
            "kind": cflow.kind,
            "features": cflow.features,
            "hyper": plain(cflow.hyper),
            "context_columns": list(cflow.context_columns),
            "target_std": cflow.target_std.to_dict(),
            "context_std": cflow.context_std.to_dict(),
            "context_range": {k: list(v) for k, v in cflow.context_range.items()},
            "meta": plain(dict(meta or {})),
            "state_dict": {k: v.detach().cpu() for k, v in cflow.state_dict().items()},
        },
    )


def load_flow(path: str | os.PathLike, device: str | torch.device = "cpu") -> ConditionalFlow:
    r"""Load a flow saved by :func:`save_flow`, in eval mode; ``.meta`` holds the saved meta.

    Raises:
        ModelFileError: the file is missing, corrupted, of another version or does not match its weights.
    """

    ckpt = load_torch_file(path, FLOW_FORMAT, what=FLOW_WHAT)
    if ckpt.get("version") != FLOW_VERSION:
        raise ModelFileError(f"{path}: flow file version {ckpt.get('version')} is not supported ({FLOW_VERSION})")
    try:
        cflow = ConditionalFlow(
            ckpt["kind"],
            ckpt["features"],
            ckpt["context_columns"],
            ckpt["hyper"],
            Standardizer(**ckpt["target_std"]),
            Standardizer(**ckpt["context_std"]),
            ckpt["context_range"],
        )
        cflow.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: flow metadata and weights do not match ({err})") from err
    cflow.meta = dict(ckpt["meta"])
    return cflow.to(device).eval()
