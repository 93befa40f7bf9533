"""Native float formatting (Ryu, native/exr_dtoa.c) spells every double exactly as orjson.dumps does.

Crafted headers carry the doubles in `m44d`, `v3d` and `double` attributes and the float32
values in `floatvector` and `float` attributes; the chunk scanner's value_json must equal
orjson.dumps of the values the bytes hold. Random draws print their seed
(EXR_INSPECTOR_DTOA_SEED reproduces a run); the `slow` variant checks millions of values.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import orjson
import pytest

from exr_inspector.crawl.columns import scan_chunk

from exrbuild import attr, single_part
from parsers import require_native

SEED = int(os.environ.get("EXR_INSPECTOR_DTOA_SEED", "2018"))
FLOATS_PER_VECTOR = 10_000
FILE_BUDGET = (2000, 1 << 20)  # attributes, value bytes: well inside the scanner's header limits


# ---- values ----------------------------------------------------------------------------


def _finite(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)]


def _neighbours(a: np.ndarray, uint, reach: int) -> np.ndarray:
    """Every value within `reach` representable steps of each of a, both signs."""
    bits = a.view(uint)
    out = [(bits.astype(np.int64) + k).astype(uint).view(a.dtype) for k in range(-reach, reach + 1)]
    out = _finite(np.concatenate(out))
    return np.concatenate([out, -out])


def random_doubles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite doubles from uniformly random 64-bit patterns."""
    return _finite(rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64))


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite float32 values from uniformly random 32-bit patterns."""
    return _finite(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32))


def short_decimals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Doubles nearest to decimals of 1..17 digits: exact bounds, ties and trailing zeros."""
    digits = rng.integers(1, 18, n)
    mant = [int(rng.integers(10 ** (d - 1), 10**d)) for d in digits]
    exps = rng.integers(-340, 310, n)
    return _finite(np.array([float(f"{m}e{e}") for m, e in zip(mant, exps, strict=True)]))


def double_edges() -> np.ndarray:
    powers = np.array([2.0**e for e in range(-1074, 1024)] + [float(f"1e{k}") for k in range(-323, 309)])
    ints = np.array([2.0**53, 2.0**54, 1e15, 1e16, 1e17, 1e21, 1e22, 1e23, 123456789012345.0])
    sub = np.arange(1, 600, dtype=np.uint64).view(np.float64)
    top = (np.uint64(0x000FFFFFFFFFFFFF) - np.arange(0, 300, dtype=np.uint64)).view(np.float64)
    big = (np.uint64(0x7FEFFFFFFFFFFFFF) - np.arange(0, 300, dtype=np.uint64)).view(np.float64)
    return np.concatenate([_neighbours(powers, np.uint64, 3), _neighbours(ints, np.uint64, 40), sub, -sub, top, big,
                           np.array([0.0, -0.0, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 0.5, 1e-5, 1e-4, 1e-6])])


def float_edges() -> np.ndarray:
    """float32 denormals, powers of two and ten (1e-5, 1e-4, 1e15, 1e16, 1e21 ...) with neighbours, max/min."""
    powers = np.array([2.0**e for e in range(-149, 128)] + [float(f"1e{k}") for k in range(-45, 39)],
                      dtype=np.float32)
    sub = np.arange(1, 3000, dtype=np.uint32).view(np.float32)
    top = (np.uint32(0x007FFFFF) - np.arange(0, 3000, dtype=np.uint32)).view(np.float32)
    big = (np.uint32(0x7F7FFFFF) - np.arange(0, 3000, dtype=np.uint32)).view(np.float32)
    ints = np.array([2.0**24, 1e7, 1e8], dtype=np.float32)
    return np.concatenate([_neighbours(powers, np.uint32, 4), _neighbours(ints, np.uint32, 20), sub, -sub, top, -top,
                           big, -big, np.array([0.0, -0.0, 0.1, 1e-5, 1e-4], dtype=np.float32)])


# ---- headers ---------------------------------------------------------------------------


def _chunks(a: np.ndarray, size: int) -> list[np.ndarray]:
    return [a[i:i + size] for i in range(0, len(a), size)]


def attributes(doubles: np.ndarray, floats: np.ndarray) -> list[tuple[str, str, bytes, list | float]]:
    """(name, type, raw value, decoded value): every double and float once, across the float types."""
    out = []
    d = doubles.astype("<f8")
    head, rest = d[:512], d[512:]
    for i, v in enumerate(head[:256]):
        out.append((f"d{i}", "double", v.tobytes(), float(v)))
    for i, c in enumerate(_chunks(head[256:], 3)):
        c = np.resize(c, 3)
        out.append((f"v{i}", "v3d", c.tobytes(), c.tolist()))
    for i, c in enumerate(_chunks(rest, 16)):
        c = np.concatenate([c, np.zeros(16 - len(c))])
        out.append((f"m{i}", "m44d", c.tobytes(), c.reshape(4, 4).tolist()))
    f = floats.astype("<f4")
    for i, v in enumerate(f[:256]):
        out.append((f"f{i}", "float", v.tobytes(), float(v)))
    for i, c in enumerate(_chunks(f[256:], FLOATS_PER_VECTOR)):
        out.append((f"fv{i}", "floatvector", c.tobytes(), c.astype(np.float64).tolist()))
    return out


def _mismatch(native: str, expected: str) -> str:
    a, b = re.findall(r"[^\[\],]+", native), re.findall(r"[^\[\],]+", expected)
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    got = a[i] if i < len(a) else "<missing>"
    want = b[i] if i < len(b) else "<missing>"
    return f"element {i}: native {got!r}, orjson {want!r} ({float(want).hex() if i < len(b) else ''})"


def write_files(tmp_path: Path, attrs: list) -> tuple[list[str], dict]:
    """Headers holding attrs, split to stay inside the scanner's limits; the expected value_json by (file, name)."""
    paths, expected, group, size = [], {}, [], 0
    for a in [*attrs, None]:
        if a is None or len(group) == FILE_BUDGET[0] or size + len(a[2]) > FILE_BUDGET[1]:
            path = tmp_path / f"dtoa_{len(paths)}.exr"
            path.write_bytes(single_part([attr(name, type_name, raw) for name, type_name, raw, _ in group]))
            for name, _, _, value in group:
                expected[(len(paths), name)] = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
            paths.append(str(path))
            group, size = [], 0
        if a is not None:
            group.append(a)
            size += len(a[2])
    return paths, expected


def check(tmp_path: Path, doubles: np.ndarray, floats: np.ndarray, seed: int) -> None:
    require_native()
    paths, expected = write_files(tmp_path, attributes(doubles, floats))
    chunk = scan_chunk(paths, native=True)
    assert chunk.errors.num_rows == 0, chunk.errors.to_pylist()[:3]
    table = chunk.attribute_rows()
    seen = 0
    for f, name, js in zip(table["file_index"].to_pylist(), table["attr_name"].to_pylist(),
                           table["value_json"].to_pylist(), strict=True):
        want = expected.get((f, name))
        if want is None:
            continue
        assert js == want, f"seed {seed}, file {f}, attribute {name!r}: {_mismatch(js, want)}"
        seen += 1
    assert seen == len(expected)


# ---- tests -----------------------------------------------------------------------------


def test_edge_values(tmp_path):
    check(tmp_path, double_edges(), float_edges(), SEED)


def test_random_bit_patterns(tmp_path):
    rng = np.random.default_rng(SEED)
    doubles = np.concatenate([random_doubles(rng, 200_000), short_decimals(rng, 20_000)])
    check(tmp_path, doubles, random_floats(rng, 100_000), SEED)


@pytest.mark.slow
@pytest.mark.parametrize("block", range(4))
def test_many_values(tmp_path, block):
    """Millions of random doubles and floats, plus every float32 denormal and a stride over all float32."""
    rng = np.random.default_rng(SEED + 1 + block)
    every = np.arange(block, 2**32, 4 * 97, dtype=np.uint64).astype(np.uint32).view(np.float32)
    denormals = np.arange(1 + block, 2**23, 4, dtype=np.uint32).view(np.float32)
    floats = np.concatenate([_finite(every), denormals, random_floats(rng, 1_000_000)])
    doubles = np.concatenate([random_doubles(rng, 2_000_000), short_decimals(rng, 100_000)])
    check(tmp_path, doubles, floats, SEED + 1 + block)


# ---- the multiplier tables -------------------------------------------------------------

DTOA_C = Path(__file__).resolve().parents[1] / "native" / "exr_dtoa.c"


def _table(src: str, name: str) -> list[int]:
    body = re.search(rf"{name}\[[^]]*\](?:\[2\])? = \{{(.*?)\}};", src, re.S).group(1)
    return [int(x.rstrip("u"), 0) for x in re.findall(r"0x[0-9a-f]+u|\b\d+u", body)]


def test_multiplier_tables_match_their_derivation():
    """The small tables rebuild 5^i and 2^k / 5^q exactly, as the comment in exr_dtoa.c derives them."""
    if not DTOA_C.is_file():
        pytest.skip("native sources not present")
    src = DTOA_C.read_text()

    def pow5bits(e):
        return ((e * 1217359) >> 19) + 1

    def pow5(i):
        s = pow5bits(i) - 125
        return 5**i >> s if s >= 0 else 5**i << -s

    def pow5_inv(q):
        return (1 << (pow5bits(q) - 1 + 125)) // 5**q + 1

    def pairs(name):
        t = _table(src, name)
        return [lo | hi << 64 for lo, hi in zip(t[::2], t[1::2], strict=True)]

    def corr(name, i):
        return (_table(src, name)[i // 16] >> (2 * (i % 16))) & 3

    def rebuild(base, off, delta, c):
        b0, b2 = 5**off * (base & (2**64 - 1)), 5**off * (base >> 64)
        return ((b0 >> delta) + ((b2 << (64 - delta)) & (2**128 - 1)) + c) & (2**128 - 1)

    base, inv_base = pairs("POW5_BASE"), pairs("POW5_INV_BASE")
    assert base == [pow5(26 * b) for b in range(13)]
    assert inv_base == [pow5_inv(26 * b) - 1 for b in range(15)]
    assert _table(src, "POW5_SMALL") == [5**k for k in range(26)]
    for i in range(326):
        b = i // 26
        assert rebuild(base[b], i - 26 * b, pow5bits(i) - pow5bits(26 * b), corr("POW5_CORR", i)) == pow5(i), i
    for q in range(342):
        b = (q + 25) // 26
        got = rebuild(inv_base[b], 26 * b - q, pow5bits(26 * b) - pow5bits(q), corr("POW5_INV_CORR", q))
        assert got == pow5_inv(q), q
