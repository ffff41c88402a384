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

The negative log-likelihood (:func:`nll_per_dim`) is reported in nats per target dimension **on the
standardised target** (each latent dimension scaled to unit variance on the training split), so it
is comparable across latent sizes; the value in the original latent units is
``nll_std + mean(log std)`` and is reported as well by :func:`evaluate_flow_file`.
"""

from __future__ import annotations

__all__ = [
    "KINDS",
    "OutOfRangeError",
    "OutOfRangeWarning",
    "Standardizer",
    "ConditionalFlow",
    "build_flow",
    "flow_hyper",
    "train_conditional_flow",
    "nll_per_dim",
    "save_flow",
    "load_flow",
    "read_latent_table",
    "train_flow_from_files",
    "evaluate_flow_file",
]

import dataclasses
import json
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn as nn
import zuko

from .atomic import atomic_path

log = logging.getLogger("morphoflow.flow")

#: Flow kinds and the hyperparameters each accepts (passed to the zuko constructor).
KINDS: dict[str, tuple[type, tuple[str, ...]]] = {
    "nsf": (zuko.flows.NSF, ("transforms", "hidden_features", "bins", "passes", "randperm")),
    "maf": (zuko.flows.MAF, ("transforms", "hidden_features", "passes", "randperm")),
    "nice": (zuko.flows.NICE, ("transforms", "hidden_features", "randmask")),
    "sospf": (zuko.flows.SOSPF, ("transforms", "hidden_features", "degree", "polynomials", "passes", "randperm")),
    "naf": (zuko.flows.NAF, ("transforms", "hidden_features", "signal", "passes", "randperm")),
    "cnf": (zuko.flows.CNF, ("hidden_features", "freqs", "atol", "rtol", "exact")),
}

CHECKPOINT_FORMAT = "morphoflow-conditional-flow"
CHECKPOINT_VERSION = 1


class OutOfRangeError(ValueError):
    r"""A condition lies outside the training range of its context column."""


class OutOfRangeWarning(UserWarning):
    r"""A condition lies outside the training range of its context column (extrapolation)."""


def flow_hyper(flow_cfg: Mapping[str, Any]) -> dict[str, Any]:
    r"""Pick from a ``flow`` config section the hyperparameters that its ``kind`` accepts."""

    kind = flow_cfg.get("kind", "nsf")
    if kind not in KINDS:
        raise ValueError(f"config key 'flow.kind': unknown flow kind '{kind}' (choose from {sorted(KINDS)})")
    keys = KINDS[kind][1]
    # ``passes: null`` is meaningful (fully autoregressive); other null keys take zuko's defaults.
    return {k: _plain(flow_cfg[k]) for k in keys if k in flow_cfg and (flow_cfg[k] is not None or k == "passes")}


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
    def fit(cls, x: np.ndarray, min_std: float = 1e-8) -> "Standardizer":
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
                raise ValueError(
                    f"{name}: context column '{col}' is missing (the flow needs {self.context_columns})"
                )
            v = np.atleast_1d(np.asarray(conditions[col], dtype=np.float64))
            if not np.isfinite(v).all():
                raise ValueError(f"{name}: context column '{col}' holds non-finite values")
            cols.append(v)
        n = max((len(c) for c in cols), default=0)
        for col, v in zip(self.context_columns, cols):
            if len(v) != n:
                raise ValueError(f"{name}: context column '{col}' has {len(v)} values, expected {n}")
        check_range(dict(zip(self.context_columns, cols)), self.context_range, on_out_of_range, name)
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
                c = self.context_std.transform(torch.as_tensor(np.asarray(context[i : i + batch_size], np.float32), device=dev))
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


def _nll_loss(model: ConditionalFlow, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    t, c = batch[0], batch[1]
    dev = model.device
    t, c = t.to(dev), c.to(dev)
    # loss = negative log-likelihood in nats per target dimension (standardised target)
    nll = -model.log_prob_std(t, c if model.context_columns else None).mean() / model.features
    return {"loss": nll}


def train_conditional_flow(
    target: np.ndarray,
    context: np.ndarray,
    val_target: np.ndarray,
    val_context: np.ndarray,
    flow_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    seed: int,
    workdir: str | os.PathLike,
    history_path: str | os.PathLike | None = None,
    *,
    context_columns: Sequence[str] | None = None,
    progress: bool = True,
) -> ConditionalFlow:
    r"""Fit a conditional flow to ``target`` (N, D) given ``context`` (N, K) by maximum likelihood.

    Arguments:
        target, context: Training table (raw units); standardised with their own statistics.
        val_target, val_context: Validation table (early stopping, best-weights selection).
        flow_cfg: The ``flow`` config section (``kind`` and hyperparameters; ``context`` names the columns
            unless ``context_columns`` is given).
        train_cfg: Training settings for :meth:`morphoflow.training.TrainSettings.from_config`.
        seed: Seed of the weight initialisation and of the training loop.
        workdir: Folder of the training checkpoints (resume).
        history_path: Optional CSV of the per-epoch history.

    Returns:
        The trained :class:`ConditionalFlow` (best validation weights, on CPU, eval mode).
    """

    from .training import TrainSettings, fit

    target = _as_2d(target, "target")
    val_target = _as_2d(val_target, "val_target")
    context = _as_2d(context, "context")
    val_context = _as_2d(val_context, "val_context")
    if len(target) != len(context) or len(val_target) != len(val_context):
        raise ValueError("target and context tables must have the same number of rows")
    if val_target.shape[1] != target.shape[1] or val_context.shape[1] != context.shape[1]:
        raise ValueError("validation and training tables must have the same columns")
    if context_columns is None:
        context_columns = list(flow_cfg.get("context", [f"c{i}" for i in range(context.shape[1])]))
    if len(context_columns) != context.shape[1]:
        raise ValueError(f"{len(context_columns)} context column names for {context.shape[1]} context columns")

    kind = flow_cfg.get("kind", "nsf")
    hyper = flow_hyper(flow_cfg)
    t_std = Standardizer.fit(target)
    c_std = Standardizer.fit(context) if context.shape[1] else Standardizer([], [])
    ranges = {col: (float(context[:, i].min()), float(context[:, i].max())) for i, col in enumerate(context_columns)}

    torch.manual_seed(seed)
    model = ConditionalFlow(kind, target.shape[1], context_columns, hyper, t_std, c_std, ranges)

    def dataset(t: np.ndarray, c: np.ndarray) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(
            torch.as_tensor(t_std.transform(t.astype(np.float32))),
            torch.as_tensor(c_std.transform(c.astype(np.float32)) if c.shape[1] else c.astype(np.float32)),
        )

    settings = TrainSettings.from_config(dict(train_cfg), seed)
    run_key = {
        "stage": "flow",
        "kind": kind,
        "hyper": json.dumps(hyper, sort_keys=True),
        "context": list(context_columns),
        "n_train": int(len(target)),
        "features": int(target.shape[1]),
        "target_mean": [round(v, 6) for v in t_std.mean],
        "seed": int(seed),
    }
    log.info("training a '%s' flow: %d x %d target, %d context columns %s", kind, *target.shape, len(context_columns), list(context_columns))
    result = fit(
        model,
        _nll_loss,
        dataset(target, context),
        dataset(val_target, val_context),
        settings,
        workdir,
        run_key=run_key,
        history_path=history_path,
        progress=progress,
    )
    model.load_state_dict(result.state_dict)
    model.cpu().eval()
    log.info("flow trained: best val NLL %.4f nats/dim (standardised) after %d steps", result.best_val_loss, result.steps)
    return model


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a (N, D) table, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds non-finite values")
    return x


@torch.no_grad()
def nll_per_dim(
    flow: ConditionalFlow,
    target: np.ndarray,
    context: np.ndarray,
    batch_size: int = 4096,
) -> float:
    r"""Mean negative log-likelihood in nats per target dimension, on the **standardised** target.

    Add ``mean(log target_std.std)`` for the value in the raw target units.
    """

    flow.eval()
    target = _as_2d(target, "target")
    context = _as_2d(context, "context") if np.asarray(context).size else np.zeros((len(target), 0), np.float32)
    dev = flow.device
    total = 0.0
    for i in range(0, len(target), batch_size):
        t = flow.target_std.transform(torch.as_tensor(target[i : i + batch_size], device=dev))
        c = None
        if flow.context_columns:
            c = flow.context_std.transform(torch.as_tensor(context[i : i + batch_size], device=dev))
        total += float(-flow.log_prob_std(t, c).double().sum())
    return total / (len(target) * flow.features)


def _plain(x: Any) -> Any:
    r"""Convert to types that ``torch.load(weights_only=True)`` accepts."""

    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, bytes):
        return x.decode()
    return x


def save_flow(path: str | os.PathLike, cflow: ConditionalFlow, meta: Mapping[str, Any] | None = None) -> None:
    r"""Save a :class:`ConditionalFlow` (weights, kind, hyperparameters, standardisation, ranges, meta) atomically."""

    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": cflow.kind,
        "features": cflow.features,
        "hyper": _plain(cflow.hyper),
        "context_columns": list(cflow.context_columns),
        "target_std": cflow.target_std.to_dict(),
        "context_std": cflow.context_std.to_dict(),
        "context_range": {k: list(v) for k, v in cflow.context_range.items()},
        "meta": _plain(dict(meta or {})),
        "state_dict": {k: v.detach().cpu() for k, v in cflow.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_flow(path: str | os.PathLike, device: str | torch.device = "cpu") -> ConditionalFlow:
    r"""Load a flow saved by :func:`save_flow` (``weights_only=True``); ``.meta`` holds the saved meta."""

    name = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"{name}: flow model file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{name}: not a readable torch checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{name}: not a morphoflow conditional-flow checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{name}: checkpoint version {ckpt.get('version')} is not supported")
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
    cflow.meta = dict(ckpt["meta"])
    return cflow.to(device).eval()


def read_latent_table(path: str | os.PathLike, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    r"""Read ``z_mean`` (N, D) and the catalog columns ``columns`` (N, K) of a latent file, plus its attributes.

    Raises:
        ValueError: naming the file and the missing dataset.
    """

    name = str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"{name}: latent file not found")
    with h5py.File(path, "r") as f:
        if "z_mean" not in f:
            raise ValueError(f"{name}: dataset 'z_mean' is missing")
        z = f["z_mean"][()].astype(np.float32)
        if z.ndim != 2:
            raise ValueError(f"{name}: dataset 'z_mean' must be (N, D), got shape {z.shape}")
        cols = []
        for col in columns:
            key = f"catalog/{col}"
            if key not in f:
                raise ValueError(f"{name}: dataset '{key}' is missing (named in config key 'flow.context')")
            v = f[key][()].astype(np.float64)
            if v.shape != (len(z),):
                raise ValueError(f"{name}: dataset '{key}' must be ({len(z)},), got shape {v.shape}")
            if not np.isfinite(v).all():
                raise ValueError(f"{name}: dataset '{key}' holds non-finite values")
            cols.append(v)
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
    if not np.isfinite(z).all():
        raise ValueError(f"{name}: dataset 'z_mean' holds non-finite values")
    context = np.stack(cols, axis=-1).astype(np.float32) if cols else np.zeros((len(z), 0), np.float32)
    return z, context, attrs


def train_flow_from_files(
    train_path: str | os.PathLike,
    val_path: str | os.PathLike,
    model_path: str | os.PathLike,
    history_path: str | os.PathLike,
    flow_cfg: Mapping[str, Any],
    seed: int,
    workdir: str | os.PathLike,
    *,
    progress: bool = True,
) -> ConditionalFlow:
    r"""Rule ``train_flow``: train on latent files (``z_mean`` | ``flow.context`` columns) and save the model.

    The saved meta carries the latent file's attributes (pixel scale, band, zero point, latent_dim,
    model) plus ``out_of_range`` (the default policy of :class:`morphoflow.Generator`).
    """

    columns = list(flow_cfg.get("context", ["mag", "hlr_arcsec", "redshift"]))
    z, c, attrs = read_latent_table(train_path, columns)
    vz, vc, _ = read_latent_table(val_path, columns)
    cflow = train_conditional_flow(
        z, c, vz, vc, flow_cfg, flow_cfg.get("train", {}), seed, workdir, history_path,
        context_columns=columns, progress=progress,
    )
    val_nll = nll_per_dim(cflow, vz, vc)
    meta = dict(attrs)
    meta.update(out_of_range=flow_cfg.get("out_of_range", "warn"), val_nll_per_dim=val_nll, n_train=len(z))
    save_flow(model_path, cflow, meta)
    return cflow


def evaluate_flow_file(
    model_path: str | os.PathLike,
    test_path: str | os.PathLike,
    out_json: str | os.PathLike,
) -> dict[str, Any]:
    r"""Rule ``evaluate_flow``: test NLL (nats/dim) of the flow on a latent file, written as JSON.

    Keys: ``test_nll_per_dim`` (standardised target), ``test_nll_per_dim_latent`` (raw latent units),
    ``n_test``, ``kind``, ``features``, ``context``, ``out_of_range_fraction`` (test rows outside the
    training range of any context column).
    """

    cflow = load_flow(model_path)
    z, c, _ = read_latent_table(test_path, cflow.context_columns)
    if z.shape[1] != cflow.features:
        raise ValueError(f"{test_path}: dataset 'z_mean' has {z.shape[1]} dims, the flow {cflow.features}")
    nll = nll_per_dim(cflow, z, c)
    outside = np.zeros(len(z), bool)
    for i, col in enumerate(cflow.context_columns):
        lo, hi = cflow.context_range[col]
        outside |= (c[:, i] < lo) | (c[:, i] > hi)
    metrics = {
        "test_nll_per_dim": nll,
        "test_nll_per_dim_latent": nll + float(np.mean(np.log(cflow.target_std.std))),
        "n_test": int(len(z)),
        "kind": cflow.kind,
        "features": cflow.features,
        "context": list(cflow.context_columns),
        "out_of_range_fraction": float(outside.mean()),
    }
    if not math.isfinite(nll):
        raise ValueError(f"{test_path}: the test NLL is not finite ({nll})")
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("test NLL %.4f nats/dim (standardised) on %d galaxies", nll, len(z))
    return metrics
