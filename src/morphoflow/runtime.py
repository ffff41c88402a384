r"""Process set-up shared by the workflow adapters: logging to the rule's log file and thread count."""

from __future__ import annotations

__all__ = ["setup_rule"]

import logging
import os
import sys
from pathlib import Path


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
    return logging.getLogger(name)
