r"""The shared training engine: one resumable, deterministic loop for every torch model of the project.

:func:`fit` minimises ``loss_fn(model, batch)["loss"]`` with AdamW under a linear warm-up and cosine
decay of the learning rate, validates each epoch, keeps the best weights (lowest validation loss),
stops early after ``patience`` epochs without improvement, and checkpoints everything needed to resume
bit-for-bit on CPU (model, optimizer, scheduler, RNG states, progress and history) every
``checkpoint_every`` steps, at each epoch end and on SIGTERM (SLURM pre-emption). A rerun with the same
``run_key`` resumes from the checkpoint; interrupting at step :math:`k` and resuming gives the same final
weights as an uninterrupted run.

The data order of epoch :math:`e` is a permutation drawn from a :class:`torch.Generator` seeded by
``item_seed(seed, e, "data-order")``, so it does not depend on what happened before: it is re-derived on
resume, not saved.

Structure: :func:`fit` builds a :class:`_Run` (the fixed parts: model, data, optimizer, scheduler,
checkpoint path) and a :class:`TrainingState` (what the run has done: step, epoch, history, best weights,
early-stopping counters), then runs named steps: :func:`_start` (seed, or restore from the checkpoint),
:func:`_train_epoch` (of :func:`_train_step`), :func:`_validate`, :func:`_end_epoch`, :func:`_write_history`
and :func:`_save_checkpoint`. The checkpoint file is written and read by :mod:`morphoflow.checkpoint`
(errors: :class:`~morphoflow.checkpoint.ModelFileError`).

References:
    | Loshchilov & Hutter (2017). SGDR: Stochastic Gradient Descent with Warm Restarts (cosine decay).
    | Loshchilov & Hutter (2019). Decoupled Weight Decay Regularization (AdamW).
"""

from __future__ import annotations

__all__ = [
    "FitResult",
    "NonFiniteLossError",
    "TrainSettings",
    "TrainingInterrupted",
    "TrainingState",
    "fit",
    "hash_run_key",
    "lr_factor",
    "select_device",
]

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate
from tqdm import tqdm

from .atomic import atomic_path
from .checkpoint import ModelFileError, load_torch_file, save_torch_file
from .seeding import item_seed

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "morphoflow-checkpoint-v1"
CHECKPOINT_WHAT = "morphoflow training checkpoint"


class TrainingInterrupted(SystemExit):
    r"""Raised after a SIGTERM once the checkpoint is written; exit code 143 (128 + SIGTERM).

    Snakemake (``--retries``) or SLURM requeue then rerun the job, which resumes from the checkpoint.
    """

    def __init__(self, message: str = "training interrupted by SIGTERM; checkpoint written", code: int = 143):
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NonFiniteLossError(FloatingPointError):
    r"""The loss became NaN or infinite; the message names the step. The last good checkpoint is kept."""


@dataclasses.dataclass
class TrainSettings:
    r"""Settings of :func:`fit` (the ``train`` sub-block of a stage's config).

    The field defaults serve direct library use (tests, benchmarks); the DAG builds the settings with
    :meth:`from_config`, which takes every value from the validated config (defaults live in the schemas).

    Attributes:
        max_epochs: Maximum number of passes over the training set.
        batch_size: Items per optimisation step.
        lr: Peak learning rate of AdamW.
        weight_decay: Decoupled weight decay of AdamW.
        warmup_steps: Linear warm-up from ``lr / 100`` to ``lr`` (clamped to half the run), then cosine
            decay to ``lr * min_lr_ratio`` at the last step.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        grad_clip: Maximum global gradient norm (``None``: no clipping).
        patience: Early stopping after this many epochs without validation-loss improvement.
        checkpoint_every: Checkpoint period in optimisation steps (also at each epoch end and on SIGTERM).
        device: ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda`` or ``mps``.
        bf16: bfloat16 autocast (CUDA only; ignored elsewhere).
        compile: Wrap the model in :func:`torch.compile` for training.
        seed: Seed of the data order, the model's random draws and the validation draws.
    """

    max_epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float | None = 5.0
    patience: int = 5
    checkpoint_every: int = 200
    device: str = "auto"
    bf16: bool = True
    compile: bool = False
    seed: int = 0

    @classmethod
    def from_config(cls, train: Mapping[str, Any], seed: int) -> TrainSettings:
        r"""Build settings from a validated config's ``train`` block and the global ``seed``.

        ``train`` must hold every setting but ``seed`` (:func:`morphoflow.config.load_config` and the
        DAG fill them from the schema), so no value falls back on a field default.

        Raises:
            ValueError: naming an unknown or missing key, or a value out of range.
        """

        names = [f.name for f in dataclasses.fields(cls) if f.name != "seed"]
        for key in train:
            if key not in names:
                raise ValueError(f"train settings: unknown key 'train.{key}' (known: {', '.join(sorted(names))})")
        missing = [key for key in names if key not in train]
        if missing:
            raise ValueError(
                f"train settings: key 'train.{missing[0]}' is missing; expected a validated config's train block "
                f"with every key ({', '.join(missing)} missing)"
            )
        settings = cls(**train, seed=seed)
        settings.check()
        return settings

    def check(self) -> None:
        r"""Raise :class:`ValueError` naming the first setting out of range."""

        positive = ("max_epochs", "batch_size", "checkpoint_every", "patience")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ValueError(f"train settings: 'train.{key}' must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"train settings: 'train.lr' must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"train settings: 'train.min_lr_ratio' must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"train settings: 'train.warmup_steps' must be >= 0, got {self.warmup_steps}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"train settings: 'train.grad_clip' must be > 0 or null, got {self.grad_clip}")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"train settings: 'train.device' must be auto|cpu|cuda|mps, got {self.device!r}")


@dataclasses.dataclass
class FitResult:
    r"""The outcome of :func:`fit`.

    Attributes:
        state_dict: Best (lowest validation loss) weights, on CPU. They are also loaded into the model.
        history: One row per epoch: ``epoch, step, lr, seconds, train_<part>..., val_<part>...``.
        best_val_loss: The lowest mean validation loss.
        steps: Optimisation steps done in total.
        stopped_early: Whether early stopping ended the run.
        resumed_from_step: Step of the checkpoint the run resumed from (0 if fresh).
    """

    state_dict: dict
    history: pd.DataFrame
    best_val_loss: float
    steps: int
    stopped_early: bool
    resumed_from_step: int


def select_device(name: str = "auto") -> torch.device:
    r"""Return the torch device for ``name``: ``auto`` picks cuda, then mps, then cpu."""

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train settings: device 'cuda' requested but CUDA is not available")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"train settings: unknown device {name!r} (auto|cpu|cuda|mps)")
    return torch.device(name)


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    r"""Learning-rate multiplier at optimisation step ``step`` (0-based) of ``total_steps``.

    Linear warm-up from 0.01 to 1 over ``min(warmup_steps, total_steps // 2)`` steps, then cosine decay
    reaching ``min_lr_ratio`` at the last step ``total_steps - 1``.
    """

    warm = min(int(warmup_steps), total_steps // 2)
    if step < warm:
        return 0.01 + 0.99 * step / warm
    span = max(total_steps - 1 - warm, 1)
    progress = min(max((step - warm) / span, 0.0), 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def hash_run_key(run_key: dict, settings: TrainSettings) -> str:
    r"""Hash of the configuration that built a run (``run_key``) and its train settings."""

    blob = json.dumps({"run_key": run_key, "settings": dataclasses.asdict(settings)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclasses.dataclass
class TrainingState:
    r"""What a run of :func:`fit` has done so far; saved in the checkpoint with the model, optimizer,
    scheduler and RNG states (under the same key names), so that a rerun resumes where it stopped.

    Attributes:
        step: Optimisation steps done.
        epoch: Epochs completed (the running epoch's index).
        history: One row per completed epoch (see :class:`FitResult`).
        best_state: Weights (on CPU) of the lowest validation loss so far, or None before the first epoch.
        best_val_loss: That lowest mean validation loss.
        bad_epochs: Epochs since the validation loss last improved.
        finished: Whether the run is over (last epoch done, or stopped early).
        stopped_early: Whether early stopping ended it.
        epoch_sums: Running item-weighted sums of the loss parts over the running epoch.
        epoch_seen: Items seen in the running epoch.
        resumed_from_step: Step of the checkpoint this run resumed from (0 if fresh; not saved).
    """

    step: int = 0
    epoch: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_val_loss: float = math.inf
    bad_epochs: int = 0
    finished: bool = False
    stopped_early: bool = False
    epoch_sums: dict[str, float] = dataclasses.field(default_factory=dict)
    epoch_seen: int = 0
    resumed_from_step: int = 0

    def payload(self) -> dict[str, Any]:
        r"""The checkpoint entries of the state."""

        return {
            "step": self.step,
            "epoch": self.epoch,
            "history": self.history,
            "best_state": self.best_state if self.best_state is not None else {},
            "best_val_loss": self.best_val_loss,
            "bad_epochs": self.bad_epochs,
            "finished": self.finished,
            "stopped_early": self.stopped_early,
            "epoch_sums": dict(self.epoch_sums),
            "epoch_seen": self.epoch_seen,
        }

    @classmethod
    def from_payload(cls, ckpt: Mapping[str, Any]) -> TrainingState:
        r"""The state saved by :meth:`payload` (``resumed_from_step`` = the saved step).

        Raises:
            KeyError, TypeError, ValueError: an entry is missing or malformed.
        """

        step = int(ckpt["step"])
        return cls(
            step=step,
            epoch=int(ckpt["epoch"]),
            history=[dict(r) for r in ckpt["history"]],
            best_state=ckpt["best_state"],
            best_val_loss=float(ckpt["best_val_loss"]),
            bad_epochs=int(ckpt["bad_epochs"]),
            finished=bool(ckpt["finished"]),
            stopped_early=bool(ckpt["stopped_early"]),
            epoch_sums={k: float(v) for k, v in ckpt["epoch_sums"].items()},
            epoch_seen=int(ckpt["epoch_seen"]),
            resumed_from_step=step,
        )


@dataclasses.dataclass
class _Run:
    r"""The fixed parts of one :func:`fit` call."""

    model: torch.nn.Module
    train_model: torch.nn.Module  # ``model`` or its torch.compile wrapper
    loss_fn: Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], dict[str, torch.Tensor]]
    train: Dataset
    val: Dataset
    settings: TrainSettings
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ckpt_path: Path
    key: str  # hash_run_key of the run
    history_path: str | os.PathLike | None
    steps_per_epoch: int
    total_steps: int

    def autocast(self) -> torch.autocast:
        r"""bfloat16 autocast when ``settings.bf16`` on CUDA, else a no-op."""

        use_bf16 = bool(self.settings.bf16) and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_bf16)


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _batch(dataset: Dataset, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:  # TensorDataset: index the tensors at once
        return tuple(t[index] for t in tensors)
    items = [dataset[int(i)] for i in index]
    batch = default_collate(items)
    return tuple(batch) if isinstance(batch, (list, tuple)) else (batch,)


def _to_device(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch)


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _numpy_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global RNG, on purpose
    return [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)]


def _set_numpy_state(state: list) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_state(state: list) -> None:
    version, internal, gauss = state
    random.setstate((version, tuple(internal), gauss))


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    r"""The data order of ``epoch``: a permutation of ``n`` items seeded by ``(seed, epoch)`` only."""

    g = torch.Generator().manual_seed(item_seed(seed, epoch, "data-order"))
    return torch.randperm(n, generator=g)


class _SigtermFlag:
    r"""Install a SIGTERM handler (main thread only) that sets a flag; restore the old handler on exit."""

    def __init__(self) -> None:
        self.raised = False
        self._old: Any = None
        self._installed = False

    def __enter__(self) -> _SigtermFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        else:
            log.warning("fit() runs outside the main thread: no SIGTERM checkpointing")
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._old if self._old is not None else signal.SIG_DFL)


# ---------------------------------------------------------------------------------------------------------------
# the steps of fit()


def _check_inputs(settings: TrainSettings, train: Dataset, val: Dataset) -> None:
    settings.check()
    if len(train) == 0:
        raise ValueError("fit: the training set is empty")
    if len(val) == 0:
        raise ValueError("fit: the validation set is empty")


def _prepare(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], dict[str, torch.Tensor]],
    train: Dataset,
    val: Dataset,
    settings: TrainSettings,
    workdir: str | os.PathLike,
    run_key: dict,
    history_path: str | os.PathLike | None,
) -> _Run:
    r"""Move the model to its device and build the optimizer (AdamW) and the learning-rate schedule."""

    device = select_device(settings.device)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = math.ceil(len(train) / int(settings.batch_size))
    total_steps = steps_per_epoch * int(settings.max_epochs)

    model.to(device)
    train_model = torch.compile(model) if settings.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    try:  # the fused kernel is ~2x faster than the per-tensor loop; fall back where unsupported
        optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total_steps, settings.warmup_steps, settings.min_lr_ratio),
    )
    return _Run(
        model,
        train_model,
        loss_fn,
        train,
        val,
        settings,
        device,
        optimizer,
        scheduler,
        workdir / CHECKPOINT_NAME,
        hash_run_key(run_key, settings),
        history_path,
        steps_per_epoch,
        total_steps,
    )


def _start(run: _Run) -> TrainingState:
    r"""Seed the global torch, NumPy and Python RNGs from the settings' seed; then, if the checkpoint was
    made by the same run key, restore the model, optimizer, scheduler, RNGs and state from it.

    Raises:
        ModelFileError: the checkpoint is unreadable, foreign, or does not fit the model (names the file).
    """

    seed = run.settings.seed
    torch.manual_seed(item_seed(seed, 0, "fit"))
    np.random.seed(item_seed(seed, 0, "fit-numpy") % 2**32)  # noqa: NPY002 - losses may use the global RNG
    random.seed(item_seed(seed, 0, "fit-python"))
    if not run.ckpt_path.exists():
        return TrainingState()
    remedy = f"deleting {run.ckpt_path} restarts training from scratch"
    ckpt = load_torch_file(run.ckpt_path, CHECKPOINT_FORMAT, what=CHECKPOINT_WHAT, remedy=remedy)
    if ckpt.get("run_key_hash") != run.key:
        log.info("%s was made by another configuration (run_key differs): starting afresh", run.ckpt_path)
        return TrainingState()
    try:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng_torch"])
        if run.device.type == "cuda" and ckpt.get("rng_cuda"):
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        _set_numpy_state(ckpt["rng_numpy"])
        _set_python_state(ckpt["rng_python"])
        state = TrainingState.from_payload(ckpt)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise ModelFileError(
            f"{run.ckpt_path}: the {CHECKPOINT_WHAT} does not fit this model and run (expected the model's, "
            f"optimizer's and scheduler's states and the RNG and run states of fit(); {type(err).__name__}: {err}); "
            f"{remedy}"
        ) from err
    log.info("resuming from %s at step %d (epoch %d)", run.ckpt_path, state.step, state.epoch)
    return state


def _save_checkpoint(run: _Run, state: TrainingState) -> None:
    r"""Write everything needed to resume bit-for-bit to ``run.ckpt_path`` (atomically)."""

    save_torch_file(
        run.ckpt_path,
        CHECKPOINT_FORMAT,
        {
            "run_key_hash": run.key,
            "model": _cpu_state(run.model),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else [],
            "rng_numpy": _numpy_state(),
            "rng_python": _python_state(),
            **state.payload(),
        },
    )


def _write_history(rows: list[dict[str, float]], path: str | os.PathLike | None) -> pd.DataFrame:
    r"""The history as a DataFrame, also written atomically to ``path`` (CSV) if given."""

    df = pd.DataFrame(rows)
    if path is not None:
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
    return df


def _train_step(run: _Run, state: TrainingState, index: torch.Tensor) -> float:
    r"""One optimisation step on the training items ``index``; returns the batch loss.

    Raises:
        NonFiniteLossError: the loss is NaN or infinite (before the weights change).
    """

    batch = _to_device(_batch(run.train, index), run.device)
    _set_progress(run.loss_fn, state.step / run.total_steps)
    with run.autocast():
        parts = run.loss_fn(run.train_model, batch)
    loss = parts["loss"]
    if not torch.isfinite(loss.detach()).all():
        raise NonFiniteLossError(
            f"non-finite training loss ({float(loss.detach().float())}) at step {state.step + 1} "
            f"(epoch {state.epoch}); last good checkpoint kept in {run.ckpt_path}"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.settings.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.settings.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    state.step += 1
    for k, v in parts.items():
        state.epoch_sums[k] = state.epoch_sums.get(k, 0.0) + float(v.detach().float()) * len(index)
    state.epoch_seen += len(index)
    return float(loss.detach().float())


def _set_progress(loss_fn: Callable, fraction: float | None) -> None:
    r"""Tell a loss with a schedule (method ``set_progress``) how far training is: the fraction of steps done,
    or None for validation (which scores the final objective, so epochs compare)."""

    hook = getattr(loss_fn, "set_progress", None)
    if hook is not None:
        hook(fraction)


def _interrupted(run: _Run, state: TrainingState) -> TrainingInterrupted:
    return TrainingInterrupted(f"SIGTERM at step {state.step}: checkpoint written to {run.ckpt_path}; rerun to resume")


def _train_epoch(run: _Run, state: TrainingState, sigterm: _SigtermFlag, bar: tqdm) -> None:
    r"""The remaining batches of epoch ``state.epoch`` (all, or those after a mid-epoch checkpoint).

    Checkpoints every ``checkpoint_every`` steps; after a SIGTERM, checkpoints and raises
    :class:`TrainingInterrupted`.
    """

    bs = int(run.settings.batch_size)
    order = _epoch_order(len(run.train), run.settings.seed, state.epoch)
    done = state.step - state.epoch * run.steps_per_epoch  # batches of this epoch already done (on resume)
    for b in range(done, run.steps_per_epoch):
        loss = _train_step(run, state, order[b * bs : (b + 1) * bs])
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if sigterm.raised:
            _save_checkpoint(run, state)
            raise _interrupted(run, state)
        if state.step % run.settings.checkpoint_every == 0:
            _save_checkpoint(run, state)


def _validate(run: _Run, epoch: int) -> dict[str, float]:
    r"""Mean loss parts over the validation items, with a forked torch RNG seeded by ``(seed, epoch)``."""

    run.model.eval()
    val, bs, device = run.val, int(run.settings.batch_size), run.device
    totals: dict[str, float] = {}
    count = 0
    devices = [device.index or 0] if device.type == "cuda" else []
    _set_progress(run.loss_fn, None)
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(item_seed(run.settings.seed, epoch, "validation"))
        for start in range(0, len(val), bs):
            index = torch.arange(start, min(start + bs, len(val)))
            batch = _to_device(_batch(val, index), device)
            with run.autocast():
                parts = run.loss_fn(run.model, batch)
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach().float()) * len(index)
            count += len(index)
    run.model.train()
    return {k: v / count for k, v in totals.items()}


def _end_epoch(run: _Run, state: TrainingState, val_parts: dict[str, float], seconds: float) -> None:
    r"""Log the epoch's row, keep the best weights, count epochs without improvement, move to the next epoch.

    Raises:
        NonFiniteLossError: the validation loss is NaN or infinite.
    """

    row: dict[str, float] = {
        "epoch": state.epoch,
        "step": state.step,
        "lr": run.optimizer.param_groups[0]["lr"],
        "seconds": seconds,
    }
    row.update({f"train_{k}": v / max(state.epoch_seen, 1) for k, v in state.epoch_sums.items()})
    row.update({f"val_{k}": v for k, v in val_parts.items()})
    state.history.append(row)
    val_loss = val_parts["loss"]
    if not math.isfinite(val_loss):
        raise NonFiniteLossError(
            f"non-finite validation loss at step {state.step} (epoch {state.epoch}); "
            f"last good checkpoint kept in {run.ckpt_path}"
        )
    if val_loss < state.best_val_loss:
        state.best_val_loss, state.best_state, state.bad_epochs = val_loss, _cpu_state(run.model), 0
    else:
        state.bad_epochs += 1
    log.info(
        "epoch %d step %d lr %.3g train_loss %.5g val_loss %.5g",
        state.epoch,
        state.step,
        row["lr"],
        row.get("train_loss", math.nan),
        val_loss,
    )
    state.epoch += 1
    state.epoch_sums, state.epoch_seen = {}, 0
    if state.bad_epochs >= run.settings.patience:
        state.stopped_early = True
        log.info("early stopping after epoch %d (%d epochs without improvement)", state.epoch - 1, state.bad_epochs)
    state.finished = state.stopped_early or state.epoch >= run.settings.max_epochs


def _finish(run: _Run, state: TrainingState) -> FitResult:
    r"""Load the best weights into the model and return the :class:`FitResult`."""

    if not state.best_state:
        raise ModelFileError(
            f"{run.ckpt_path}: the finished run holds no best state (expected the best weights of a "
            f"{CHECKPOINT_WHAT}); delete the file to train afresh"
        )
    run.model.load_state_dict(state.best_state)
    return FitResult(
        state_dict=state.best_state,
        history=_write_history(state.history, run.history_path),
        best_val_loss=state.best_val_loss,
        steps=state.step,
        stopped_early=state.stopped_early,
        resumed_from_step=state.resumed_from_step,
    )


# ---------------------------------------------------------------------------------------------------------------


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], dict[str, torch.Tensor]],
    train: Dataset,
    val: Dataset,
    settings: TrainSettings,
    workdir: str | os.PathLike,
    *,
    run_key: dict,
    history_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> FitResult:
    r"""Train ``model`` by minimising ``loss_fn(model, batch)["loss"]``; resumable and deterministic.

    Arguments:
        model: The module to train (moved to the device; the best weights are loaded into it at the end).
        loss_fn: ``loss_fn(model, batch) -> {"loss": scalar, <part>: scalar, ...}``; ``batch`` is the tuple
            of a dataset item's tensors, stacked and on the device. Extra parts are logged as
            ``train_<part>`` / ``val_<part>``. A loss with a schedule (e.g. a KL weight that grows) has a
            method ``set_progress(fraction)``, called with the fraction of steps done before each training
            step and with None before validation; it depends on the step count only, so resume is exact.
        train: Training items (tuples of tensors); a :class:`~torch.utils.data.TensorDataset` is fastest.
        val: Validation items; the epoch's validation figures are means over items.
        settings: The :class:`TrainSettings`.
        workdir: Folder of ``checkpoint.pt`` (created; kept after the run so a rerun is a no-op resume).
        run_key: The configuration that built the run (JSON-able); a checkpoint made under another key is
            ignored and training starts afresh.
        history_path: If given, ``history.csv`` written atomically after each epoch.
        progress: Show a tqdm progress bar on stderr.

    The global torch, NumPy and Python RNGs are seeded from ``settings.seed`` when a run starts (and
    restored from the checkpoint when it resumes); validation draws use a forked RNG seeded by
    ``(seed, epoch)`` so they do not perturb training.

    Raises:
        TrainingInterrupted: after SIGTERM, once the checkpoint is written (exit code 143).
        NonFiniteLossError: when the training loss is NaN/inf (names the step; last good checkpoint kept).
        ModelFileError: when ``workdir/checkpoint.pt`` is corrupted, foreign or does not fit the model.
    """

    _check_inputs(settings, train, val)
    run = _prepare(model, loss_fn, train, val, settings, workdir, run_key, history_path)
    state = _start(run)
    bar = tqdm(
        total=run.total_steps, initial=state.step, file=sys.stderr, disable=not progress, desc="fit", unit="step"
    )
    try:
        with _SigtermFlag() as sigterm:
            model.train()
            while not state.finished and state.epoch < settings.max_epochs:
                t0 = time.perf_counter()
                _train_epoch(run, state, sigterm, bar)
                val_parts = _validate(run, state.epoch)
                _end_epoch(run, state, val_parts, time.perf_counter() - t0)
                _write_history(state.history, history_path)
                _save_checkpoint(run, state)
                if sigterm.raised:
                    raise _interrupted(run, state)
    finally:
        bar.close()
    return _finish(run, state)
