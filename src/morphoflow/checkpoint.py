r"""Torch files of the project (models and training checkpoints): one writer, one loader, one error type.

Every file is a plain dict with a ``format`` tag, written atomically and read with
``torch.load(weights_only=True)``, so a file can never run code when it is loaded.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
    >>> save_torch_file(path, "demo-v1", {"weights": {}})
    >>> load_torch_file(path, "demo-v1", what="demo model")["weights"]
    {}
"""

from __future__ import annotations

__all__ = ["ModelFileError", "load_torch_file", "plain", "save_torch_file"]

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import DiskFullError, atomic_path


class ModelFileError(ValueError):
    r"""A model or checkpoint file is missing, corrupted or not what was expected; the message names the file."""


def save_torch_file(path: str | os.PathLike, file_format: str, payload: dict[str, Any]) -> None:
    r"""Write ``payload`` with ``format = file_format`` to ``path`` atomically (``torch.save``)."""

    size = _nbytes(payload) + 2**16
    with atomic_path(path, size=size) as tmp:
        try:
            with open(tmp, "wb") as f:  # through a file object: the archive's folder is "archive", not the tmp name
                torch.save({"format": file_format, **payload}, f)
        except RuntimeError as err:  # torch's writer reports a short write (full disk) as "unexpected pos"
            if "unexpected pos" not in str(err):
                raise
            raise DiskFullError(f"{path}: disk full while writing (short write); needs about {size} bytes") from err


def _nbytes(x: Any) -> int:
    r"""Bytes of the tensors and arrays in a nested payload (the bulk of a torch file)."""

    if isinstance(x, (torch.Tensor, np.ndarray)):
        return int(x.nbytes) if isinstance(x, np.ndarray) else x.element_size() * x.nelement()
    if isinstance(x, Mapping):
        return sum(_nbytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    return 0


def load_torch_file(path: str | os.PathLike, file_format: str, *, what: str, remedy: str = "") -> dict[str, Any]:
    r"""Load a file written by :func:`save_torch_file` with ``weights_only=True``.

    The archive's CRCs are checked first, so damaged bytes are an error rather than wrong weights.

    Arguments:
        path: The file.
        file_format: The ``format`` tag it must carry.
        what: What the file should be, for messages (e.g. ``"morphoflow autoencoder"``).
        remedy: Appended to every error message (e.g. what deleting the file does).

    Raises:
        ModelFileError: the file is missing, corrupted, holds code, or carries another format (names the file).
    """

    tail = f"; {remedy}" if remedy else ""
    if not Path(path).exists():
        raise ModelFileError(f"{path}: {what} file not found{tail}")
    _check_archive(path, what, tail)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelFileError(f"{path}: not a {what} file: {_torch_reason(err)}{tail}") from err
    except Exception as err:  # any other loading failure means a damaged file
        raise ModelFileError(f"{path}: corrupted {what} file ({_torch_reason(err)}){tail}") from err
    if not isinstance(blob, dict) or blob.get("format") != file_format:
        raise ModelFileError(f"{path}: not a {what} file (missing format '{file_format}'){tail}")
    return blob


def _check_archive(path: str | os.PathLike, what: str, tail: str) -> None:
    r"""Raise :class:`ModelFileError` if ``path`` is not a complete zip archive with intact CRCs."""

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ModelFileError(
            f"{path}: corrupted or truncated {what} file (not a complete torch archive: {err}){tail}"
        ) from err
    except Exception as err:  # zlib / struct errors inside a damaged archive
        raise ModelFileError(f"{path}: corrupted {what} file ({type(err).__name__}: {err}){tail}") from err
    if bad is not None:
        raise ModelFileError(f"{path}: corrupted {what} file (CRC mismatch in archive member '{bad}'){tail}")


def _torch_reason(err: BaseException) -> str:
    r"""The cause in a torch loading error, without torch's advice (``weights_only=False`` runs the file's code)."""

    skip = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().startswith(skip)]
    text = " ".join(lines) or type(err).__name__
    text = text.split(". This is an internal")[0]
    if "GLOBAL" in text:
        return f"it asks to run Python code ({text.rstrip('.')}); morphoflow files hold data only"
    return text


def plain(x: Any) -> Any:
    r"""``x`` with NumPy values, tuples and bytes turned into the plain types ``weights_only=True`` accepts."""

    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, bytes):
        return x.decode()
    return x
