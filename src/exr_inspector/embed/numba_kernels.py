"""The two numba kernels of the embedder, as numba source: nothing else, so the build can
compile it ahead of time without the package.

``kernels`` runs them from ``_kernels_aot``, the extension module the package build
compiles from this file with numba's own ahead-of-time compiler (``numba.pycc``, for
generic x86-64). Without fastmath nothing is reassociated, so its results are the JIT's
bit for bit (tested). A process that embeds then never imports numba: that import and
LLVM's start cost ~0.35 s and ~100 MB per process. Without the compiled module (a build without numba,
or ``EXR_INSPECTOR_JIT=1``) the same functions are JIT-compiled (``cache=True``).
Tests hold both to the references in ``kernels``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_SIGN_SHIFT = np.uint64(63)


# --------------------------------------------------------------------------- XXH64
@njit(cache=True, inline="always")
def _rotl(x: np.uint64, r: int) -> np.uint64:
    """64-bit rotate left: (x << r) | (x >> (64 - r))."""
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(cache=True, inline="always")
def _read(data: np.ndarray, pos: int, n: int) -> np.uint64:
    """Little-endian unsigned integer of ``n`` bytes at ``data[pos]`` (n = 4 or 8)."""
    v = np.uint64(0)
    for i in range(n):
        v |= np.uint64(data[pos + i]) << np.uint64(8 * i)
    return v


@njit(cache=True, inline="always")
def _round(acc: np.uint64, lane: np.uint64) -> np.uint64:
    """XXH64 round: rotl(acc + lane * P2, 31) * P1."""
    return _rotl(acc + lane * _P2, 31) * _P1


@njit(cache=True)
def _xxh64(data: np.ndarray, start: int, end: int) -> np.uint64:
    """XXH64 with seed 0 of ``data[start:end]`` (the xxHash spec, all arithmetic mod 2**64).

    len >= 32: four lanes v = (P1+P2, P2, 0, -P1) absorb 32-byte stripes with ``_round``;
    h = rotl(v1,1) + rotl(v2,7) + rotl(v3,12) + rotl(v4,18), then each lane merged as
    h = (h ^ _round(0, v)) * P1 + P4. Otherwise h = P5. Then h += len, the tail is
    folded in 8-, 4- and 1-byte steps, and the avalanche is
    h ^= h>>33; h *= P2; h ^= h>>29; h *= P3; h ^= h>>32.
    """
    n = end - start
    p = start
    if n >= 32:
        v1 = _P1 + _P2
        v2 = _P2
        v3 = np.uint64(0)
        v4 = np.uint64(0) - _P1
        limit = end - 32
        while p <= limit:
            v1 = _round(v1, _read(data, p, 8))
            v2 = _round(v2, _read(data, p + 8, 8))
            v3 = _round(v3, _read(data, p + 16, 8))
            v4 = _round(v4, _read(data, p + 24, 8))
            p += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        for v in (v1, v2, v3, v4):
            h = (h ^ _round(np.uint64(0), v)) * _P1 + _P4
    else:
        h = _P5
    h += np.uint64(n)
    while p + 8 <= end:
        h = _rotl(h ^ _round(np.uint64(0), _read(data, p, 8)), 27) * _P1 + _P4
        p += 8
    if p + 4 <= end:
        h = _rotl(h ^ (_read(data, p, 4) * _P1), 23) * _P2 + _P3
        p += 4
    while p < end:
        h = _rotl(h ^ (np.uint64(data[p]) * _P5), 11) * _P1
        p += 1
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h


@njit(cache=True)
def hash_tokens(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """out[i] = XXH64(data[offsets[i]:offsets[i+1]], seed=0) for i < len(offsets) - 1.

    ``data``/``offsets`` are an Arrow string array's data and offsets buffers (see
    ``string_buffers``): offsets are absolute, so a sliced array needs no copy.
    """
    n = offsets.shape[0] - 1
    out = np.empty(n, np.uint64)
    for i in range(n):
        out[i] = _xxh64(data, offsets[i], offsets[i + 1])
    return out


# --------------------------------------------------------------------------- scatter
@njit(cache=True, inline="always")
def _signed(h: np.uint64, w: np.float32) -> float:
    """The signed contribution of one token: -w if bit 63 of h is set, else +w (as float64)."""
    return -np.float64(w) if (h >> _SIGN_SHIFT) & np.uint64(1) else np.float64(w)


@njit(cache=True)
def _normalise_into(acc: np.ndarray, out: np.ndarray) -> None:
    """out = acc / ||acc||_2 (float64 sum of squares in index order); all-zero acc -> 1/sqrt(dim)."""
    ss = 0.0
    for j in range(acc.shape[0]):
        ss += acc[j] * acc[j]
    if ss == 0.0:
        out[:] = np.float32(1.0 / np.sqrt(acc.shape[0]))
    else:
        inv = 1.0 / np.sqrt(ss)
        for j in range(acc.shape[0]):
            out[j] = np.float32(acc[j] * inv)


@njit(cache=True)
def scatter_sorted(rows: np.ndarray, hashes: np.ndarray, weights: np.ndarray, n_rows: int, dim: int) -> np.ndarray:
    """out[r] = normalise(sum over k with rows[k] == r of sign(h_k) * weights[k] * e[h_k % dim]).

    sign(h) = -1 if bit 63 of h is set else +1; the index is h mod dim. XXH64 output is
    already avalanched, so no extra mix: sign and index are as good as independent.
    ``rows`` must be non-decreasing (``scatter_rows`` sorts when needed): each row is
    summed in one float64 scratch row, in token order, then written as float32, so
    memory stays at the output size whatever the chunk.
    """
    out = np.empty((n_rows, dim), np.float32)
    acc = np.zeros(dim, np.float64)
    d = np.uint64(dim)
    k = 0
    n = rows.shape[0]
    for r in range(n_rows):
        acc[:] = 0.0
        while k < n and rows[k] == r:
            acc[np.int64(hashes[k] % d)] += _signed(hashes[k], weights[k])
            k += 1
        _normalise_into(acc, out[r])
    return out


# The exported signatures. Token bytes come read-only (Arrow and IPC buffers are immutable).
_BYTES = types.Array(types.uint8, 1, "A", readonly=True)
SIGNATURES = {
    "hash_tokens": types.Array(types.uint64, 1, "C")(_BYTES, types.Array(types.int64, 1, "A")),
    "scatter_sorted": types.Array(types.float32, 2, "C")(
        types.Array(types.int64, 1, "A"), types.Array(types.uint64, 1, "A"), types.Array(types.float32, 1, "A"),
        types.int64, types.int64),
}


def aot_module(name: str, output_dir: str):
    """numba's ahead-of-time compiler set up for this file's kernels (``.compile()`` builds it)."""
    from numba.pycc import CC

    cc = CC(name)
    cc.output_dir = output_dir
    for fn in (hash_tokens, scatter_sorted):
        cc.export(fn.__name__, SIGNATURES[fn.__name__])(fn.py_func)
    return cc
