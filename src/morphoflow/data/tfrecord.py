r"""TFRecord export of galaxy sets, written with the ``tfrecord`` package (no TensorFlow).

One ``tf.train.Example`` per galaxy (see ``docs/data-format.md``):

* ``image``: bytes, float32 little-endian, C×H×W in C order, counts;
* ``shape``: int64 list ``[C, H, W]``;
* ``id``: int64 galaxy id;
* every float catalog column as a float feature of the same name (``float32`` in TFRecord).

Examples are serialised with protobuf's deterministic mode (features sorted by name), so two runs
write byte-identical files; ``tfrecord.TFRecordWriter`` alone orders the feature map by string hash,
which changes with ``PYTHONHASHSEED`` from one process to the next.
"""

from __future__ import annotations

__all__ = ["read_tfrecord", "write_tfrecord"]

import os
import struct
from typing import Any, BinaryIO

import numpy as np
from tfrecord import TFRecordWriter, example_pb2
from tfrecord.reader import tfrecord_loader

from ..atomic import atomic_path
from ..contract import GalaxySet


def write_tfrecord(path: str | os.PathLike, gs: GalaxySet) -> None:
    r"""Write ``gs`` to the TFRecord file ``path`` (atomic), one example per galaxy."""

    shape = [int(s) for s in gs.images.shape[1:]]
    floats = [k for k, v in gs.catalog.items() if k != "id" and np.asarray(v).dtype.kind == "f"]
    with atomic_path(path, size=gs.images.size * 4 + len(gs) * 1024) as tmp, open(tmp, "wb") as f:
        for i in range(len(gs)):
            datum: dict[str, tuple[Any, str]] = {
                "image": (np.ascontiguousarray(gs.images[i], dtype="<f4").tobytes(), "byte"),
                "shape": (shape, "int"),
                "id": (int(gs.catalog["id"][i]), "int"),
            }
            for key in floats:
                datum[key] = (float(gs.catalog[key][i]), "float")
            _write_record(f, datum)


def _write_record(f: BinaryIO, datum: dict[str, tuple[Any, str]]) -> None:
    r"""Append one ``tf.train.Example`` (features in sorted order) with the TFRecord framing and CRCs."""

    kinds = {
        "byte": lambda v: example_pb2.Feature(bytes_list=example_pb2.BytesList(value=v)),
        "float": lambda v: example_pb2.Feature(float_list=example_pb2.FloatList(value=v)),
        "int": lambda v: example_pb2.Feature(int64_list=example_pb2.Int64List(value=v)),
    }
    features = {}
    for key in sorted(datum):
        value, kind = datum[key]
        features[key] = kinds[kind](value if isinstance(value, (list, tuple)) else [value])
    example = example_pb2.Example(features=example_pb2.Features(feature=features))
    record = example.SerializeToString(deterministic=True)
    length = struct.pack("<Q", len(record))
    f.write(length + TFRecordWriter.masked_crc(length) + record + TFRecordWriter.masked_crc(record))


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
