r"""Stage 2: the conditional normalizing flow over the autoencoder's latents (rules ``train_flow``, ``evaluate_flow``).

Modules: :mod:`.model` (zuko flow kinds, standardisation, the :class:`ConditionalFlow`), :mod:`.train`,
:mod:`.evaluate` (test NLL), :mod:`.io` (flow files).
"""

from __future__ import annotations

__all__ = [
    "KINDS",
    "ConditionalFlow",
    "OutOfRangeError",
    "OutOfRangeWarning",
    "Standardizer",
    "build_flow",
    "flow_hyper",
    "load_flow",
    "nll_per_dim",
    "save_flow",
    "train_conditional_flow",
]

from .evaluate import nll_per_dim
from .io import load_flow, save_flow
from .model import KINDS, ConditionalFlow, OutOfRangeError, OutOfRangeWarning, Standardizer, build_flow, flow_hyper
from .train import train_conditional_flow
