"""The embedder's numba kernels, each next to the plain reference it is tested against.

Two array jobs, both over a whole chunk at once:

* ``hash_tokens(data, offsets)``: XXH64 (seed 0) of every string of an Arrow array,
  read straight from its data and offsets buffers (``hash_strings(arr)`` gets them),
  no Python string per token. Reference: ``hash_tokens_ref`` (the xxhash package).
* ``scatter_sorted`` (via ``scatter_rows``, which checks arguments and groups rows):
  signed feature hashing of (row, hash, weight) triples into dense rows, then L2
  normalisation. Reference: ``scatter_rows_ref`` (``np.add.at``).

XXH64 rather than Python's ``hash()``: it is stable across processes, machines and
versions, and ``xxhash`` (already a dependency) is the reference it is checked against.

The kernels' source is ``numba_kernels``; they run from the module the build compiled
from it ahead of time, or JIT-compiled where that module is missing (``BACKEND``).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import xxhash

JIT_ENV = "EXR_INSPECTOR_JIT"  # "1": JIT-compile the kernels even where the compiled module exists


def _load():
    if os.environ.get(JIT_ENV) != "1":
        try:
            from . import _kernels_aot as impl

            return impl, "aot"
        except ImportError:  # built without numba's AOT compiler: the same source, JIT-compiled
            pass
    from . import numba_kernels as impl

    return impl, "jit"


_IMPL, BACKEND = _load()


def string_buffers(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy (data uint8, offsets int32|int64) views of a string array, slice offset applied.

    The offsets are returned as stored (absolute into the data buffer), so a sliced
    array needs no copy of its bytes. Nulls are refused: a null has no bytes to hash.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        off_type = np.int32
    elif pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        off_type = np.int64
    else:
        raise TypeError(f"expected a string array, got {arr.type}")
    if arr.null_count:
        raise ValueError("string arrays to hash must not contain nulls")
    _, off_buf, data_buf = arr.buffers()
    if off_buf is None or len(arr) == 0:
        return np.empty(0, np.uint8), np.zeros(1, off_type)
    offsets = np.frombuffer(off_buf, off_type)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    # Always read-only, as the compiled kernel's signature takes it (the JIT would otherwise
    # compile a second specialisation for writable bytes, ~6 ms a process).
    data = data.view()
    data.flags.writeable = False
    return data, offsets


# The compiled kernels take exactly their signatures' types and check nothing (an int32
# array read as int64 reads past its end): these wrappers are the only way in.
def hash_tokens(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """out[i] = XXH64(data[offsets[i]:offsets[i+1]], seed=0): ``numba_kernels.hash_tokens``."""
    data = np.asarray(data)
    offsets = np.ascontiguousarray(offsets, np.int64)
    if data.dtype != np.uint8 or data.ndim != 1 or offsets.ndim != 1 or offsets.size < 1:
        raise ValueError("data must be 1-d uint8 and offsets 1-d with at least one entry")
    if offsets[0] < 0 or offsets[-1] > data.size or np.any(offsets[1:] < offsets[:-1]):
        raise ValueError("offsets must be non-decreasing and within data")
    return _IMPL.hash_tokens(data, offsets)


def _triples(rows: np.ndarray, hashes: np.ndarray, weights: np.ndarray, n_rows: int, dim: int) -> tuple:
    rows = np.ascontiguousarray(rows, np.int64)
    hashes = np.ascontiguousarray(hashes, np.uint64)
    weights = np.ascontiguousarray(weights, np.float32)
    if not (rows.shape == hashes.shape == weights.shape) or rows.ndim != 1:
        raise ValueError("rows, hashes and weights must be 1-d and the same length")
    if dim < 1 or n_rows < 0:
        raise ValueError("dim must be >= 1 and n_rows >= 0")
    return rows, hashes, weights, int(n_rows), int(dim)


def scatter_sorted(rows: np.ndarray, hashes: np.ndarray, weights: np.ndarray, n_rows: int, dim: int) -> np.ndarray:
    """``numba_kernels.scatter_sorted``: rows must be grouped (``scatter_rows`` sorts them)."""
    return _IMPL.scatter_sorted(*_triples(rows, hashes, weights, n_rows, dim))



def hash_tokens_ref(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Reference: the ``xxhash`` package on each token's bytes."""
    return np.array(
        [xxhash.xxh64_intdigest(data[offsets[i] : offsets[i + 1]].tobytes(), 0) for i in range(len(offsets) - 1)],
        np.uint64,
    )


def hash_strings(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """XXH64 (seed 0) of each string's UTF-8 bytes, as uint64: ``hash_tokens`` on the Arrow buffers.
    Tokens, and the catalog's ``path_hash`` and the crawl's seen-set of paths."""
    # One kernel signature (int64 offsets) for string and large_string: 8 bytes a token copied.
    return hash_tokens(*string_buffers(arr))


def scatter_rows(
    rows: np.ndarray, hashes: np.ndarray, weights: np.ndarray, n_rows: int, dim: int
) -> np.ndarray:
    """Dense L2-normalised float32[n_rows, dim] rows from signed hashed features.

    Each row depends only on its own tokens in their given order (a stable sort by
    row is applied when ``rows`` is not grouped), so the result is the same whether
    the rows are embedded in one chunk or many.
    """
    rows, hashes, weights, n_rows, dim = _triples(rows, hashes, weights, n_rows, dim)
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError("row index out of range")
    if rows.size > 1 and np.any(rows[1:] < rows[:-1]):
        perm = np.argsort(rows, kind="stable")
        rows, hashes, weights = rows[perm], hashes[perm], weights[perm]
    return _IMPL.scatter_sorted(rows, hashes, weights, n_rows, dim)


def scatter_rows_ref(
    rows: np.ndarray, hashes: np.ndarray, weights: np.ndarray, n_rows: int, dim: int
) -> np.ndarray:
    """Reference: ``np.add.at`` (sequential, float64) then NumPy row norms."""
    hashes = np.asarray(hashes, np.uint64)
    index = (hashes % np.uint64(dim)).astype(np.int64)
    sign = np.where(hashes >> np.uint64(63), -1.0, 1.0)
    acc = np.zeros((n_rows, dim), np.float64)
    np.add.at(acc, (np.asarray(rows, np.int64), index), sign * np.asarray(weights, np.float32).astype(np.float64))
    norm = np.sqrt((acc * acc).sum(axis=1, keepdims=True))
    out = np.where(norm > 0, acc / np.where(norm > 0, norm, 1.0), 1.0 / np.sqrt(dim))
    return np.ascontiguousarray(out, np.float32)


def warm_up() -> None:
    """Load every kernel for the types the crawl uses (JIT: compile, or load from numba's cache).

    The crawl calls this before forking its readers, so they share the loaded code
    instead of each paying for it (with the JIT, for LLVM and its memory).
    """
    arr = pa.array(["warm", "up"], pa.string())
    hashes = hash_strings(arr)
    scatter_rows(np.zeros(2, np.int64), hashes, np.ones(2, np.float32), 1, 8)
