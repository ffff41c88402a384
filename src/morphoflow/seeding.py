r"""Per-item random seeds that do not depend on thread count or order.

Every random draw that belongs to one item (a galaxy, a stamp, a particle set)
uses a seed derived from ``(seed, item id, purpose)`` by hashing, so that the
same item gets the same numbers whether it is processed first or last, on one
thread or on many.
"""

from __future__ import annotations

__all__ = ["hash_unit", "item_rng", "item_seed"]

import hashlib

import numpy as np


def _digest(*parts: object) -> bytes:
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def item_seed(seed: int, item_id: int, purpose: str = "") -> int:
    r"""Return a 63-bit seed derived from the global ``seed``, an item id and a purpose tag."""

    return int.from_bytes(_digest(seed, item_id, purpose), "little") >> 1


def item_rng(seed: int, item_id: int, purpose: str = "") -> np.random.Generator:
    r"""Return a NumPy generator seeded by :func:`item_seed`."""

    return np.random.default_rng(item_seed(seed, item_id, purpose))


def hash_unit(item_id: int, salt: str = "split") -> float:
    r"""Map an item id to a number in :math:`[0, 1)` by hashing (deterministic splits)."""

    return int.from_bytes(_digest(salt, item_id), "little") / 2.0**64
