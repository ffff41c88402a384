r"""TFRecord export of galaxy sets, written with the ``tfrecord`` package (no TensorFlow).

One ``tf.train.Example`` per galaxy (see ``docs/data-format.md``):

* ``image``: bytes, float32 little-endian, C×H×W in C order, counts;
* ``shape``: int64 list ``[C, H, W]``;
* ``id``: int64 galaxy id;
* every float catalog column as a float feature of the same name (``float32`` in TFRecord).
"""

from __future__ import annotations

__all__ = ["read_tfrecord", "write_tfrecord"]

import os
from typing import Any

import numpy as np
from tfrecord import TFRecordWriter
from tfrecord.reader import tfrecord_loader

from ..atomic import atomic_path
from ..contract import GalaxySet


def write_tfrecord(path: str | os.PathLike, gs: GalaxySet) -> None:
    r"""Write ``gs`` to the TFRecord file ``path`` (atomic), one example per galaxy."""

    shape = [int(s) for s in gs.images.shape[1:]]
    floats = [k for k, v in gs.catalog.items() if k != "id" and np.asarray(v).dtype.kind == "f"]
    with atomic_path(path, size=gs.images.size * 4 + len(gs) * 1024) as tmp:
        writer = TFRecordWriter(str(tmp))
        try:
            for i in range(len(gs)):
                datum: dict[str, tuple[Any, str]] = {
                    "image": (np.ascontiguousarray(gs.images[i], dtype="<f4").tobytes(), "byte"),
                    "shape": (shape, "int"),
                    "id": (int(gs.catalog["id"][i]), "int"),
                }
                for key in floats:
                    datum[key] = (float(gs.catalog[key][i]), "float")
                writer.write(datum)
        finally:
            writer.close()


def read_tfrecord(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""Read a file written by :func:`write_tfrecord`: returns (images (N, C, H, W) float32, columns)."""

    images, columns = [], {}
    for rec in tfrecord_loader(str(path), None):
        shape = tuple(int(s) for s in rec["shape"])
        images.append(np.frombuffer(bytes(rec["image"]), dtype="<f4").reshape(shape))
        for key, value in rec.items():
            if key not in ("image", "shape"):
                columns.setdefault(key, []).append(value[0])
    if not images:
        raise ValueError(f"{path}: TFRecord file holds no example")
    return np.stack(images), {k: np.asarray(v) for k, v in columns.items()}
