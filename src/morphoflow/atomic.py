r"""Atomic file output: write to a temporary sibling, rename when complete.

A crash, a SIGTERM or an exception while writing never leaves a partial file
under the final name: the temporary file is removed and the final path is
untouched. A full disk (or a file-size limit) is one :class:`DiskFullError`
naming the path and the bytes needed, checked before writing when the size is
known and caught at the first failing write otherwise.
"""

from __future__ import annotations

__all__ = ["DiskFullError", "atomic_path", "check_free_space"]

import errno
import os
import re
import resource
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DiskFullError(OSError):
    r"""Not enough space (or a file-size limit) to write a file; the message names the path and the bytes needed."""

    def __init__(self, message: str, code: int = errno.ENOSPC) -> None:
        super().__init__(message)
        self.errno = code


def _space(folder: Path) -> int:
    r"""Bytes a new file in ``folder`` may hold: free disk space, capped by the process's file-size limit."""

    free = shutil.disk_usage(folder).free
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return free if limit == resource.RLIM_INFINITY else min(free, int(limit))


def check_free_space(path: str | os.PathLike, size: int) -> None:
    r"""Raise :class:`DiskFullError` if ``size`` bytes cannot be written to a new file next to ``path``."""

    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    space = _space(folder)
    if size > space:
        raise DiskFullError(f"{path}: not enough disk space: needs {size} bytes, {space} bytes available in {folder}")


def _is_full(err: Exception) -> bool:
    r"""Whether ``err`` is a full disk or a file-size limit (h5py reports the errno only in its message,
    astropy a short write as ``<n> requested and <m> written``)."""

    if getattr(err, "errno", None) in (errno.ENOSPC, errno.EFBIG):
        return True
    text = str(err)
    known = (os.strerror(errno.ENOSPC), os.strerror(errno.EFBIG), "errno = 28", "errno = 27")
    return any(s in text for s in known) or re.search(r"\d+ requested and \d+ written", text) is not None


@contextmanager
def atomic_path(path: str | os.PathLike, *, size: int | None = None) -> Iterator[Path]:
    r"""Yield a temporary path next to ``path``; rename it to ``path`` on success.

    Arguments:
        path: The final output path. Its parent folder is created if needed.
        size: Bytes the file will need at most, if known: checked against the free space first.

    Raises:
        DiskFullError: ``size`` does not fit, or a write failed with ENOSPC / EFBIG (nothing is left behind).

    Example:
        >>> with atomic_path("out.h5") as tmp:
        ...     write_something(tmp)
    """

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if size is not None:
        check_free_space(final, size)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")

    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {final}")
        os.replace(tmp, final)
    except (OSError, RuntimeError) as err:  # h5py raises RuntimeError when closing a file it could not extend
        if isinstance(err, DiskFullError) or not _is_full(err):
            raise
        code = errno.EFBIG if getattr(err, "errno", None) == errno.EFBIG or "errno = 27" in str(err) else errno.ENOSPC
        need = f"needs {size} bytes" if size is not None else "needs more space than is available"
        raise DiskFullError(f"{final}: disk full while writing ({os.strerror(code)}); {need}", code) from err
    finally:
        if tmp.exists():
            tmp.unlink()
