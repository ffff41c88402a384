r"""The shared training engine: one resumable, deterministic loop for every torch model of the project.

:func:`fit` minimises ``loss_fn(model, batch)["loss"]`` with AdamW under a linear warm-up and cosine
decay of the learning rate, validates each epoch, keeps the best weights (lowest validation loss),
stops early after ``patience`` epochs without improvement, and checkpoints everything needed to resume
bit-for-bit on CPU (model, optimizer, scheduler, RNG states, data order, history) every
``checkpoint_every`` steps, at each epoch end and on SIGTERM (SLURM pre-emption). A rerun with the same
``run_key`` resumes from the checkpoint; interrupting at step :math:`k` and resuming gives the same final
weights as an uninterrupted run.

The data order of epoch :math:`e` is a permutation drawn from a :class:`torch.Generator` seeded by
``item_seed(seed, e, "data-order")``, so it does not depend on what happened before.

References:
    | Loshchilov & Hutter (2017). SGDR: Stochastic Gradient Descent with Warm Restarts (cosine decay).
    | Loshchilov & Hutter (2019). Decoupled Weight Decay Regularization (AdamW).
"""

from __future__ import annotations

__all__ = [
    "TrainSettings",
    "FitResult",
    "TrainingInterrupted",
    "NonFiniteLossError",
    "CheckpointError",
    "select_device",
    "lr_factor",
    "fit",
    "run_key_hash",
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate
from tqdm import tqdm

from .atomic import atomic_path
from .seeding import item_seed

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "morphoflow-checkpoint-v1"


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


class CheckpointError(RuntimeError):
    r"""A checkpoint file is corrupted or was not written by :func:`fit`; the message names the file."""


@dataclasses.dataclass
class TrainSettings:
    r"""Settings of :func:`fit` (the ``train`` sub-block of a stage's config).

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
    def from_config(cls, d: dict | None, seed: int) -> "TrainSettings":
        r"""Build settings from a config's ``train`` block ``d`` and the global ``seed``.

        Raises:
            ValueError: naming an unknown key or a value out of range.
        """

        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in names:
                raise ValueError(f"train settings: unknown key 'train.{key}' (known: {', '.join(sorted(names))})")
        d.setdefault("seed", seed)
        settings = cls(**d)
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


def run_key_hash(run_key: dict, settings: TrainSettings) -> str:
    r"""Hash of the configuration that built a run (``run_key``) and its train settings."""

    blob = json.dumps({"run_key": run_key, "settings": dataclasses.asdict(settings)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


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
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)]


def _set_numpy_state(state: list) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_state(state: list) -> None:
    version, internal, gauss = state
    random.setstate((version, tuple(internal), gauss))


def _epoch_order(n: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(item_seed(seed, epoch, "data-order"))
    return torch.randperm(n, generator=g), g


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"{path}: corrupted or unreadable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a morphoflow training checkpoint (missing format '{CHECKPOINT_FORMAT}')")
    return ckpt


class _SigtermFlag:
    r"""Install a SIGTERM handler (main thread only) that sets a flag; restore the old handler on exit."""

    def __init__(self) -> None:
        self.raised = False
        self._old: Any = None
        self._installed = False

    def __enter__(self) -> "_SigtermFlag":
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
            ``train_<part>`` / ``val_<part>``.
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
        CheckpointError: when ``workdir/checkpoint.pt`` is corrupted or foreign.
    """

    settings.check()
    if len(train) == 0:
        raise ValueError("fit: the training set is empty")
    if len(val) == 0:
        raise ValueError("fit: the validation set is empty")

    device = select_device(settings.device)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = workdir / CHECKPOINT_NAME
    key = run_key_hash(run_key, settings)

    n_train = len(train)
    bs = int(settings.batch_size)
    steps_per_epoch = math.ceil(n_train / bs)
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
    use_bf16 = bool(settings.bf16) and device.type == "cuda"

    # ---- state, fresh or resumed
    torch.manual_seed(item_seed(settings.seed, 0, "fit"))
    np.random.seed(item_seed(settings.seed, 0, "fit-numpy") % 2**32)
    random.seed(item_seed(settings.seed, 0, "fit-python"))
    step, epoch = 0, 0
    rows: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_val = math.inf
    bad_epochs = 0
    finished = False
    stopped_early = False
    sums: dict[str, float] = {}
    seen = 0
    resumed_from = 0

    if ckpt_path.exists():
        ckpt = _load_checkpoint(ckpt_path)
        if ckpt.get("run_key_hash") != key:
            log.info("%s was made by another configuration (run_key differs): starting afresh", ckpt_path)
        else:
            try:
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                scheduler.load_state_dict(ckpt["scheduler"])
                torch.set_rng_state(ckpt["rng_torch"])
                if device.type == "cuda" and ckpt.get("rng_cuda"):
                    torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
                _set_numpy_state(ckpt["rng_numpy"])
                _set_python_state(ckpt["rng_python"])
                step, epoch = int(ckpt["step"]), int(ckpt["epoch"])
                rows = [dict(r) for r in ckpt["history"]]
                best_state = ckpt["best_state"]
                best_val = float(ckpt["best_val_loss"])
                bad_epochs = int(ckpt["bad_epochs"])
                finished = bool(ckpt["finished"])
                stopped_early = bool(ckpt["stopped_early"])
                sums = {k: float(v) for k, v in ckpt["epoch_sums"].items()}
                seen = int(ckpt["epoch_seen"])
            except (KeyError, RuntimeError, ValueError, TypeError) as err:
                raise CheckpointError(f"{ckpt_path}: checkpoint does not match this model/run ({err})") from err
            resumed_from = step
            log.info("resuming from %s at step %d (epoch %d)", ckpt_path, step, epoch)

    data_gen = torch.Generator()

    def save_checkpoint() -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "run_key_hash": key,
            "model": _cpu_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "rng_numpy": _numpy_state(),
            "rng_python": _python_state(),
            "rng_data": data_gen.get_state(),
            "step": step,
            "epoch": epoch,
            "history": rows,
            "best_state": best_state if best_state is not None else {},
            "best_val_loss": best_val,
            "bad_epochs": bad_epochs,
            "finished": finished,
            "stopped_early": stopped_early,
            "epoch_sums": dict(sums),
            "epoch_seen": seen,
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    def write_history() -> pd.DataFrame:
        df = pd.DataFrame(rows)
        if history_path is not None:
            with atomic_path(history_path) as tmp:
                df.to_csv(tmp, index=False)
        return df

    def validate() -> dict[str, float]:
        model.eval()
        totals: dict[str, float] = {}
        count = 0
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(item_seed(settings.seed, epoch, "validation"))
            for start in range(0, len(val), bs):
                index = torch.arange(start, min(start + bs, len(val)))
                batch = _to_device(_batch(val, index), device)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    parts = loss_fn(model, batch)
                for k, v in parts.items():
                    totals[k] = totals.get(k, 0.0) + float(v.detach().float()) * len(index)
                count += len(index)
        model.train()
        return {k: v / count for k, v in totals.items()}

    bar = tqdm(total=total_steps, initial=step, file=sys.stderr, disable=not progress, desc="fit", unit="step")
    try:
        with _SigtermFlag() as sigterm:
            model.train()
            while not finished and epoch < settings.max_epochs:
                t0 = time.perf_counter()
                order, data_gen = _epoch_order(n_train, settings.seed, epoch)
                done = step - epoch * steps_per_epoch  # batches of this epoch already done (on resume)
                for b in range(done, steps_per_epoch):
                    index = order[b * bs : (b + 1) * bs]
                    batch = _to_device(_batch(train, index), device)
                    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        parts = loss_fn(train_model, batch)
                    loss = parts["loss"]
                    if not torch.isfinite(loss.detach()).all():
                        raise NonFiniteLossError(
                            f"non-finite training loss ({float(loss.detach().float())}) at step {step + 1} "
                            f"(epoch {epoch}); last good checkpoint kept in {ckpt_path}"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if settings.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach().float()) * len(index)
                    seen += len(index)
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach().float()):.4g}", refresh=False)
                    if sigterm.raised:
                        save_checkpoint()
                        raise TrainingInterrupted(
                            f"SIGTERM at step {step}: checkpoint written to {ckpt_path}; rerun to resume"
                        )
                    if step % settings.checkpoint_every == 0:
                        save_checkpoint()

                val_parts = validate()
                row: dict[str, float] = {
                    "epoch": epoch,
                    "step": step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - t0,
                }
                row.update({f"train_{k}": v / max(seen, 1) for k, v in sums.items()})
                row.update({f"val_{k}": v for k, v in val_parts.items()})
                rows.append(row)
                val_loss = val_parts["loss"]
                if not math.isfinite(val_loss):
                    raise NonFiniteLossError(
                        f"non-finite validation loss at step {step} (epoch {epoch}); last good checkpoint kept in {ckpt_path}"
                    )
                if val_loss < best_val:
                    best_val, best_state, bad_epochs = val_loss, _cpu_state(model), 0
                else:
                    bad_epochs += 1
                log.info(
                    "epoch %d step %d lr %.3g train_loss %.5g val_loss %.5g",
                    epoch, step, row["lr"], row.get("train_loss", math.nan), val_loss,
                )
                epoch += 1
                sums, seen = {}, 0
                if bad_epochs >= settings.patience:
                    stopped_early = True
                    log.info("early stopping after epoch %d (%d epochs without improvement)", epoch - 1, bad_epochs)
                finished = stopped_early or epoch >= settings.max_epochs
                write_history()
                save_checkpoint()
                if sigterm.raised:
                    raise TrainingInterrupted(
                        f"SIGTERM at step {step}: checkpoint written to {ckpt_path}; rerun to resume"
                    )
    finally:
        bar.close()

    if best_state is None or not best_state:
        raise CheckpointError(f"{ckpt_path}: the finished run holds no best state")
    model.load_state_dict(best_state)
    return FitResult(
        state_dict=best_state,
        history=write_history(),
        best_val_loss=best_val,
        steps=step,
        stopped_early=stopped_early,
        resumed_from_step=resumed_from,
    )
