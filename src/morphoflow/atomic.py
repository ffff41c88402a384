r"""Atomic file output: write to a temporary sibling, rename when complete.

A crash, a SIGTERM or an exception while writing never leaves a partial file
under the final name: the temporary file is removed and the final path is
untouched.
"""

from __future__ import annotations

__all__ = ["atomic_path"]

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    r"""Yield a temporary path next to ``path``; rename it to ``path`` on success.

    Arguments:
        path: The final output path. Its parent folder is created if needed.

    Example:
        >>> with atomic_path("out.h5") as tmp:
        ...     write_something(tmp)
    """

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")

    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {final}")
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
