r"""Stage 2: a conditional normalizing flow :math:`p(\mathrm{target} \mid \mathrm{context})` (zuko).

The module works on a generic table: ``target`` (N, D) and ``context`` (N, K) with named context
columns. In image mode the target is the autoencoder's standardised latent mean ``z_mean`` and the
context the catalog columns of ``flow.context`` (default ``mag`` [AB mag], ``hlr_arcsec`` [arcsec],
``redshift``); in particle mode the target is a particle's phase-space vector and the context the
latent plus global parameters. Both target and context are standardised with training-split
statistics stored with the model (:class:`Standardizer`).

Flow kinds (:func:`build_flow`) and their sampling cost, with D target features:

* ``nsf`` (default) — neural spline flow (Durkan et al., 2019). With ``passes=2`` (default) each
  transform is a coupling layer: sampling costs 2 network passes per transform, as fast as density
  evaluation. ``passes: null`` makes it fully autoregressive (more expressive, D passes to sample).
* ``maf`` — masked autoregressive flow (Papamakarios et al., 2017), affine; same ``passes`` trade-off.
* ``nice`` — additive/affine coupling (Dinh et al., 2014): cheapest, least expressive.
* ``sospf`` — sum-of-squares polynomial flow (Jaini et al., 2019): inverted by bisection, slow to sample.
* ``naf`` — neural autoregressive flow (Huang et al., 2018): inverted by bisection, slow to sample.
* ``cnf`` — continuous flow / FFJORD (Grathwohl et al., 2018): an adaptive ODE solve per sample
  and per density; slowest, and its adaptive step depends on the whole batch, so samples agree
  across batch sizes only to the solver tolerance.

Samples are drawn from per-item base noise :math:`\epsilon_i \sim \mathcal{N}(0, I)` seeded by
:func:`morphoflow.seeding.item_seed`, pushed through the inverse transform, so an item's sample does
not depend on its batch (up to float rounding, and the CNF caveat above).

The negative log-likelihood (:func:`morphoflow.flow.evaluate.nll_per_dim`) is reported in nats per target dimension **on the
standardised target** (each latent dimension scaled to unit variance on the training split), so it
is comparable across latent sizes; the value in the original latent units is
``nll_std + mean(log std)`` and is reported as well by :func:`morphoflow.flow.evaluate.run_evaluate_flow`.
"""

from __future__ import annotations

__all__ = [
    "KINDS",
    "ConditionalFlow",
    "OutOfRangeError",
    "OutOfRangeWarning",
    "Standardizer",
    "as_table",
    "base_noise",
    "build_flow",
    "check_range",
    "flow_hyper",
]

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import zuko

from ..checkpoint import plain

#: Flow kinds and the hyperparameters each accepts (passed to the zuko constructor).
KINDS: dict[str, tuple[type, tuple[str, ...]]] = {
    "nsf": (zuko.flows.NSF, ("transforms", "hidden_features", "bins", "passes", "randperm")),
    "maf": (zuko.flows.MAF, ("transforms", "hidden_features", "passes", "randperm")),
    "nice": (zuko.flows.NICE, ("transforms", "hidden_features", "randmask")),
    "sospf": (zuko.flows.SOSPF, ("transforms", "hidden_features", "degree", "polynomials", "passes", "randperm")),
    "naf": (zuko.flows.NAF, ("transforms", "hidden_features", "signal", "passes", "randperm")),
    "cnf": (zuko.flows.CNF, ("hidden_features", "freqs", "atol", "rtol", "exact")),
}


class OutOfRangeError(ValueError):
    r"""A condition lies outside the training range of its context column."""


class OutOfRangeWarning(UserWarning):
    r"""A condition lies outside the training range of its context column (extrapolation)."""


def flow_hyper(flow_cfg: Mapping[str, Any]) -> dict[str, Any]:
    r"""Pick from a ``flow`` config section the hyperparameters that its ``kind`` accepts."""

    kind = flow_cfg["kind"]
    if kind not in KINDS:
        raise ValueError(f"config key 'flow.kind': unknown flow kind '{kind}' (choose from {sorted(KINDS)})")
    keys = KINDS[kind][1]
    # ``passes: null`` is meaningful (fully autoregressive); other null keys take zuko's defaults.
    return {k: plain(flow_cfg[k]) for k in keys if k in flow_cfg and (flow_cfg[k] is not None or k == "passes")}


def build_flow(kind: str, features: int, context: int, **hyper: Any) -> zuko.flows.Flow:
    r"""Build a zuko flow of ``kind`` over ``features`` target dimensions with ``context`` conditions.

    Arguments:
        kind: One of :data:`KINDS` (``nsf``, ``maf``, ``nice``, ``sospf``, ``naf``, ``cnf``).
        features: Target dimension D (>= 1; coupling kinds need D >= 2).
        context: Context dimension K (0 for an unconditional flow).
        hyper: Hyperparameters accepted by the kind (see :data:`KINDS`), e.g. ``transforms``,
            ``hidden_features`` (list of widths), ``bins``, ``passes`` (2 = coupling, None = autoregressive).
    """

    if kind not in KINDS:
        raise ValueError(f"unknown flow kind '{kind}' (choose from {sorted(KINDS)})")
    cls, allowed = KINDS[kind]
    bad = sorted(set(hyper) - set(allowed))
    if bad:
        raise ValueError(f"flow kind '{kind}' does not take hyperparameter(s) {bad} (allowed: {list(allowed)})")
    if features < 1:
        raise ValueError(f"a flow needs at least one target feature, got {features}")
    hyper = dict(hyper)
    if "hidden_features" in hyper:
        hyper["hidden_features"] = tuple(int(h) for h in hyper["hidden_features"])
    if "passes" in hyper and hyper["passes"] is not None:
        hyper["passes"] = min(int(hyper["passes"]), features)
    if features == 1 and kind == "nice":
        raise ValueError("flow kind 'nice' (coupling) needs at least 2 target features")
    return cls(features=features, context=context, **hyper)


@dataclasses.dataclass
class Standardizer:
    r"""Per-column affine standardisation ``(x - mean) / std``; mean and std kept as plain lists."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, x: np.ndarray, min_std: float = 1e-8) -> Standardizer:
        r"""Fit on rows of ``x`` (N, D); a constant column gets std 1."""

        x = np.asarray(x, dtype=np.float64)
        std = x.std(axis=0)
        std = np.where(std > min_std, std, 1.0)
        return cls(mean=[float(v) for v in x.mean(axis=0)], std=[float(v) for v in std])

    def _params(self, like: np.ndarray | torch.Tensor) -> tuple[Any, Any]:
        if isinstance(like, torch.Tensor):
            kw = dict(dtype=like.dtype, device=like.device)
            return torch.tensor(self.mean, **kw), torch.tensor(self.std, **kw)
        return np.asarray(self.mean, like.dtype), np.asarray(self.std, like.dtype)

    def transform(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        mean, std = self._params(x)
        return (x - mean) / std

    def inverse(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        mean, std = self._params(x)
        return x * std + mean

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


class ConditionalFlow(nn.Module):
    r"""A zuko flow with its target/context standardisation, context column names and training ranges.

    Arguments:
        kind: Flow kind (see :func:`build_flow`).
        features: Target dimension D.
        context_columns: Names of the K context columns, in order.
        hyper: Hyperparameters of the kind.
        target_std: Standardisation of the target (fitted on the training split).
        context_std: Standardisation of the context (fitted on the training split).
        context_range: ``{column: (min, max)}`` over the training split, for the out-of-range check.
    """

    def __init__(
        self,
        kind: str,
        features: int,
        context_columns: Sequence[str],
        hyper: Mapping[str, Any],
        target_std: Standardizer,
        context_std: Standardizer,
        context_range: Mapping[str, Sequence[float]],
    ) -> None:
        super().__init__()
        self.kind = kind
        self.features = int(features)
        self.context_columns = [str(c) for c in context_columns]
        self.hyper = dict(hyper)
        self.target_std = target_std
        self.context_std = context_std
        self.context_range = {k: (float(v[0]), float(v[1])) for k, v in context_range.items()}
        self.flow = build_flow(kind, self.features, len(self.context_columns), **self.hyper)
        self.meta: dict[str, Any] = {}  # filled by load_flow with the saved meta

    @property
    def device(self) -> torch.device:
        return next(self.flow.parameters()).device

    def _dist(self, c_std: torch.Tensor | None) -> torch.distributions.Distribution:
        return self.flow(c_std) if self.context_columns else self.flow()

    def log_prob_std(self, t_std: torch.Tensor, c_std: torch.Tensor | None) -> torch.Tensor:
        r"""Log density (nats) of standardised targets given standardised contexts."""

        return self._dist(c_std).log_prob(t_std)

    def context_matrix(
        self,
        conditions: Mapping[str, Any],
        on_out_of_range: str = "warn",
        name: str = "conditions",
    ) -> np.ndarray:
        r"""Stack the context columns of a table (dict of arrays or DataFrame) into (B, K) float32.

        Missing columns and non-finite values raise ``ValueError``; values outside the training
        range warn (:class:`OutOfRangeWarning`) or raise (:class:`OutOfRangeError`) per ``on_out_of_range``.
        """

        if on_out_of_range not in ("warn", "error"):
            raise ValueError(f"on_out_of_range must be 'warn' or 'error', got '{on_out_of_range}'")
        cols = []
        for col in self.context_columns:
            if col not in conditions:
                raise ValueError(f"{name}: context column '{col}' is missing (the flow needs {self.context_columns})")
            v = np.atleast_1d(np.asarray(conditions[col], dtype=np.float64))
            if not np.isfinite(v).all():
                raise ValueError(f"{name}: context column '{col}' holds non-finite values")
            cols.append(v)
        n = max((len(c) for c in cols), default=0)
        for col, v in zip(self.context_columns, cols, strict=True):
            if len(v) != n:
                raise ValueError(f"{name}: context column '{col}' has {len(v)} values, expected {n}")
        check_range(dict(zip(self.context_columns, cols, strict=True)), self.context_range, on_out_of_range, name)
        if not cols:
            return np.zeros((n, 0), np.float32)
        return np.stack(cols, axis=-1).astype(np.float32)

    @torch.no_grad()
    def sample_from_noise(self, context: np.ndarray, eps: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        r"""Push base noise ``eps`` (B, D) through the inverse flow at raw ``context`` (B, K); return raw targets."""

        self.eval()
        out = []
        dev = self.device
        for i in range(0, len(eps), batch_size):
            e = torch.as_tensor(np.asarray(eps[i : i + batch_size], np.float32), device=dev)
            c = None
            if self.context_columns:
                c = self.context_std.transform(
                    torch.as_tensor(np.asarray(context[i : i + batch_size], np.float32), device=dev)
                )
            t_std = self._dist(c).transform.inv(e)
            out.append(self.target_std.inverse(t_std).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.features), np.float32)

    def sample(self, context: np.ndarray, seeds: Sequence[int], batch_size: int = 4096) -> np.ndarray:
        r"""One raw target sample per row of ``context`` (B, K), with base noise seeded per row by ``seeds`` (B,)."""

        eps = base_noise(seeds, self.features)
        return self.sample_from_noise(context, eps, batch_size)


def base_noise(seeds: Sequence[int], features: int) -> np.ndarray:
    r"""Standard-normal base draws (B, D) float32, row ``i`` from ``numpy.random.default_rng(seeds[i])``."""

    eps = np.empty((len(seeds), features), np.float32)
    for i, s in enumerate(seeds):
        eps[i] = np.random.default_rng(int(s)).standard_normal(features)
    return eps


def check_range(
    columns: Mapping[str, np.ndarray],
    ranges: Mapping[str, tuple[float, float]],
    on_out_of_range: str = "warn",
    name: str = "conditions",
) -> None:
    r"""Warn or raise if any value of a column lies outside its training ``(min, max)``."""

    for col, v in columns.items():
        if col not in ranges:
            continue
        lo, hi = ranges[col]
        bad = (v < lo) | (v > hi)
        if bad.any():
            worst = v[bad][np.argmax(np.abs(v[bad] - (lo + hi) / 2))]
            msg = (
                f"{name}: context column '{col}' = {worst:g} is outside the training range "
                f"[{lo:g}, {hi:g}] ({int(bad.sum())} of {len(v)} values); the flow would extrapolate"
            )
            if on_out_of_range == "error":
                raise OutOfRangeError(msg)
            warnings.warn(msg, OutOfRangeWarning, stacklevel=3)


def as_table(x: np.ndarray, name: str) -> np.ndarray:
    r"""``x`` as a finite (N, D) float32 table (a 1-D array becomes one column); ``name`` for messages."""

    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a (N, D) table, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds non-finite values")
    return x
