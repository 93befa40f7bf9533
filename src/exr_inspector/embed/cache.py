"""Vectors by exact signature bytes, kept across the chunks a reader embeds.

A reader sees the same few hundred AOV layouts in chunk after chunk; with the C scanner's
``Signatures`` it embeds a layout once per process instead of once per chunk. A vector
depends only on its own tokens, and equal signature bytes mean equal tokens, so a cached
vector is bit-identical to a fresh one. Bounded: past ``max_bytes`` it starts again empty.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa


class VectorCache:
    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self._rows: dict[bytes, np.ndarray] = {}
        self._bytes = 0
        self.hits = self.misses = 0

    def rows(self, keys: pa.Array, compute: Callable[[np.ndarray], np.ndarray], dim: int) -> np.ndarray:
        """float32[len(keys), dim]: the vector of each key, ``compute(indices)`` giving the rows of
        the keys not cached (in that order)."""
        names = keys.to_pylist()
        out = np.empty((len(names), dim), np.float32)
        missing = []
        for i, k in enumerate(names):
            row = self._rows.get(k)
            if row is None:
                missing.append(i)
            else:
                out[i] = row
        self.hits += len(names) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = compute(np.asarray(missing, np.int64))
            out[missing] = fresh
            for i, row in zip(missing, fresh, strict=True):
                self._add(names[i], row)
        return out

    def _add(self, key: bytes, row: np.ndarray) -> None:
        size = len(key) + row.nbytes + 100
        if self._bytes + size > self.max_bytes:
            self._rows.clear()
            self._bytes = 0
            if size > self.max_bytes:
                return
        self._rows[key] = row.copy()
        self._bytes += size
