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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_path


class ModelFileError(ValueError):
    r"""A model or checkpoint file is missing, corrupted or not what was expected; the message names the file."""


def save_torch_file(path: str | os.PathLike, file_format: str, payload: dict[str, Any]) -> None:
    r"""Write ``payload`` with ``format = file_format`` to ``path`` atomically (``torch.save``)."""

    with atomic_path(path) as tmp:
        torch.save({"format": file_format, **payload}, tmp)


def load_torch_file(path: str | os.PathLike, file_format: str, *, what: str) -> dict[str, Any]:
    r"""Load a file written by :func:`save_torch_file` with ``weights_only=True``.

    Arguments:
        path: The file.
        file_format: The ``format`` tag it must carry.
        what: What the file should be, for messages (e.g. ``"morphoflow autoencoder"``).

    Raises:
        ModelFileError: the file is missing, unreadable, or carries another format (names the file).
    """

    if not Path(path).exists():
        raise ModelFileError(f"{path}: {what} file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means a bad file
        raise ModelFileError(f"{path}: corrupted or unreadable {what} file ({type(err).__name__}: {err})") from err
    if not isinstance(blob, dict) or blob.get("format") != file_format:
        raise ModelFileError(f"{path}: not a {what} file (missing format '{file_format}')")
    return blob


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
