"""Property-based fuzzing of both parsers on mutated real headers.

For any bytes: the only exception is ExrError with a known code, the native and
Python parsers agree exactly (value for value, warning for warning, error for
error), and the payload and text report build. `make fuzz` runs many more examples
(EXR_INSPECTOR_FUZZ_EXAMPLES); a failure prints the seed and the shrunk input.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exr_inspector import inspect_bytes
from exr_inspector.exr import ERROR_CODES, ExrError
from exr_inspector.report import render_text

from exrbuild import attr, multipart, part_attrs, single_part
from parsers import outcome_bytes, outcome_file, require_native

EXAMPLES = int(os.environ.get("EXR_INSPECTOR_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def _seeds() -> list[bytes]:
    """Crafted headers covering every type, plus the headers of the real corpus when present."""
    every_type = single_part([
        attr("b2f", "box2f", struct.pack("<4f", 0, 1, 2, 3)),
        attr("by", "bytes", struct.pack("<I", 2) + b"ab" + b"xyz"),
        attr("chroma", "chromaticities", struct.pack("<8f", *range(8))),
        attr("dis", "deepImageState", b"\1"),
        attr("d", "double", struct.pack("<d", 1.5)),
        attr("env", "envmap", b"\0"),
        attr("fv", "floatvector", struct.pack("<3f", 1, 2, 3)),
        attr("kc", "keycode", struct.pack("<7i", *range(7))),
        attr("m33d", "m33d", struct.pack("<9d", *range(9))),
        attr("m44f", "m44f", struct.pack("<16f", *range(16))),
        attr("prev", "preview", struct.pack("<II", 1, 1) + b"\1\2\3\4"),
        attr("rat", "rational", struct.pack("<iI", 24000, 1001)),
        attr("sv", "stringvector", struct.pack("<i", 3) + b"abc" + struct.pack("<i", 1) + b"d"),
        attr("tiles", "tiledesc", struct.pack("<IIB", 16, 16, 1)),
        attr("tc", "timecode", struct.pack("<II", 1, 2)),
        attr("v3d", "v3d", struct.pack("<3d", 1, 2, 3)),
        attr("custom", "acmeType", b"\0\1\2"),
        attr("s", "string", "héllo".encode()),
    ], flags=0x400)
    seeds = [every_type, multipart([part_attrs("a", view="left"), part_attrs("b", "deepscanline")], flags=0x1800)]
    corpus = Path(os.environ.get("EXR_INSPECTOR_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))
    if corpus.is_dir():
        for p in sorted(corpus.rglob("*.exr"))[:60]:
            seeds.append(p.read_bytes()[:8192])
    return seeds


SEEDS = _seeds()


def _size_offsets(data: bytes) -> list[int]:
    """Offsets of attribute size fields, found by a lenient walk of the attribute list."""
    out, pos = [], 8
    while pos < len(data) and len(out) < 200:
        n = data.find(b"\0", pos)
        if n <= pos:
            pos = n + 1 if n == pos else len(data)
            continue
        t = data.find(b"\0", n + 1)
        if t < 0 or t + 5 > len(data):
            break
        out.append(t + 1)
        (size,) = struct.unpack_from("<i", data, t + 1)
        pos = t + 5 + max(size, 0)
    return out


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "size", "byte", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[i:]
        elif kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        else:
            offsets = _size_offsets(bytes(data))
            if offsets:
                at = draw(st.sampled_from(offsets))
                value = draw(st.sampled_from([-1, 0, 1, 3, 7, 2**31 - 1, -(2**31)]) | st.integers(-(2**31), 2**31 - 1))
                data[at:at + 4] = struct.pack("<i", value)
    return bytes(data)


def _check(data: bytes, **limits) -> None:
    py = outcome_bytes(data, "python", **limits)
    nat = outcome_bytes(data, "native", **limits)
    assert py == nat
    if py[0] == "error":
        assert py[1] in ERROR_CODES
        return
    if not limits:
        payload = inspect_bytes(data, path="fuzz.0001.exr")
        assert render_text(payload)


@FUZZ
@given(mutated())
def test_mutated_headers_agree(data):
    require_native()
    _check(data)


@FUZZ
@given(mutated(), st.integers(1, 64))
def test_item_budget_agrees(data, max_items):
    require_native()
    _check(data, max_items=max_items)


@FUZZ
@given(st.binary(max_size=64))
def test_random_bytes_never_crash(data):
    require_native()
    _check(b"\x76\x2f\x31\x01\x02\x00\x00\x00" + data)
    _check(data)


_TMP = tempfile.mkdtemp(prefix="exr-fuzz-")


@settings(max_examples=max(EXAMPLES // 5, 20), deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated(), st.integers(0, 200_000), st.sampled_from([64, 1000, 70_000, 16 << 20]))
def test_files_agree(data, pad, max_header):
    """The file readers (growth past 64 KiB, the header cap, shrunk reads) agree too."""
    require_native()
    path = Path(_TMP) / "f.exr"
    path.write_bytes(data + b"\0" * pad)
    py = outcome_file(path, "python", max_header_bytes=max_header)
    assert py == outcome_file(path, "native", max_header_bytes=max_header)


def test_exr_error_is_the_only_exception():
    """A direct check of the contract the fuzzers rely on."""
    with pytest.raises(ExrError):
        inspect_bytes(b"\x76\x2f\x31\x01\x02\x00\x00\x00abc")
