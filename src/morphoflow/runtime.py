r"""Process set-up shared by the workflow adapters: logging to the rule's log file, thread count, and
uncaught exceptions written to that log (so ``logs/<rule>.log`` ends with the error when a rule fails)."""

from __future__ import annotations

__all__ = ["log_uncaught", "setup_rule"]

import logging
import os
import sys
import traceback
from pathlib import Path
from types import TracebackType


def setup_rule(log: str | os.PathLike | None = None, threads: int = 1, name: str = "morphoflow") -> logging.Logger:
    r"""Send log records to ``log`` (and stderr) and cap the threads of torch and BLAS at ``threads``.

    Progress bars (tqdm) write to stderr, so they show in the terminal while the log file keeps
    the messages.
    """

    threads = max(int(threads), 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    log_uncaught()
    return logging.getLogger(name)


def log_uncaught() -> None:
    r"""Install a ``sys.excepthook`` that writes an uncaught exception to the log files of the root logger.

    The record ends with the traceback and the line ``rule failed: <ExceptionType>: <message>``, so the
    last line of the rule's log names the cause. Snakemake runs a rule's ``script:`` as its own Python
    process, so every exception that ends the script passes through this hook.
    """

    previous = sys.excepthook

    def hook(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, err, tb)
            return
        text = "".join(traceback.format_exception(kind, err, tb)).rstrip()
        cause = f"rule failed: {kind.__name__}: {err}"
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.stream.write(f"{text}\n{cause}\n")
                handler.flush()
        sys.stderr.write(f"{text}\n{cause}\n")

    sys.excepthook = hook
