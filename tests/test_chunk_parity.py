"""The native chunk scanner equals the Python reference, table for table, on real and hostile files."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exr_inspector.crawl.columns import header_hash, scan_chunk, scan_chunk_reference
from exr_inspector.embed import SIGNATURE_NAMES
from exr_inspector.exr import read_header
from test_fuzz import EXAMPLES, mutated
from test_signatures import assert_sound

from conftest import corpus_root
from parsers import require_native

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _nan_equal(values: list) -> list:
    return ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in values]


def assert_same(paths, **limits):
    require_native()
    nat = scan_chunk(paths, native=True, signature_names=SIGNATURE_NAMES, **limits)
    ref = scan_chunk_reference(paths, **limits)
    assert_sound(nat)  # equal signatures, equal embedding tokens: on hostile files too
    for name, table in ref.tables().items():
        other = nat.tables()[name]
        assert other.schema == table.schema, name
        if not other.equals(table):  # NaN != NaN: compare again with NaNs made equal
            for col in table.column_names:
                a, b = _nan_equal(other[col].to_pylist()), _nan_equal(table[col].to_pylist())
                diff = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
                assert a == b, f"{name}.{col} differs first at row {diff}: native {a[diff]!r} vs reference {b[diff]!r}"
    return ref


def test_corpus_chunk_matches_reference():
    root = corpus_root()
    if root is None:
        pytest.skip("EXR corpus not found")
    paths = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.name not in ("MANIFEST.tsv", "README.md"))
    ref = assert_same(paths + [str(root / "missing.exr"), str(root)])
    assert ref.files.num_rows > 60 and ref.errors.num_rows > 50
    assert {"io_error", "not_exr", "truncated"} <= set(ref.errors["error_code"].to_pylist())


def test_generated_tree_matches_reference(tmp_path):
    from gen_tree import generate

    generate(tmp_path, 60, templates=12, seed=3, damaged=4)
    paths = sorted(str(p) for p in tmp_path.rglob("*.exr"))
    ref = assert_same(paths)
    assert ref.files.num_rows == 60 and ref.errors.num_rows == 4


def test_header_hash_is_orjson_canonical(tmp_path):
    from gen_tree import generate

    generate(tmp_path, 5, templates=2, seed=5)
    paths = sorted(str(p) for p in tmp_path.rglob("*.exr"))
    chunk = scan_chunk(paths, native=True)
    for path, hh in zip(chunk.files["file_path"].to_pylist(), chunk.files["header_hash"].to_pylist(), strict=True):
        parts = read_header(path).header["parts"]
        assert hh == header_hash(parts)
        assert len(hh) == 32 and orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)


def test_item_budget_errors_match(tmp_path):
    from gen_tree import generate

    generate(tmp_path, 6, templates=3, seed=9)
    paths = sorted(str(p) for p in tmp_path.rglob("*.exr"))
    ref = assert_same(paths, max_items=40)
    assert set(ref.errors["error_code"].to_pylist()) == {"header_too_large"}


_TMP = Path(tempfile.mkdtemp(prefix="exr-chunk-fuzz-"))


@settings(max_examples=max(EXAMPLES // 3, 30), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(mutated(), min_size=1, max_size=6), st.sampled_from([1 << 20, 50]))
def test_fuzzed_chunks_match_reference(blobs, max_items):
    paths = []
    for i, data in enumerate(blobs):
        p = _TMP / f"f{i}.exr"
        p.write_bytes(data)
        paths.append(str(p))
    assert_same(paths, max_items=max_items)
    for p in paths:
        os.unlink(p)


def test_values_with_different_bytes_and_one_json_are_one_value(tmp_path):
    """The scanner keys values by their bytes; two NaN payloads and two chlists differing only in
    reserved padding each have one canonical JSON, so they must come out as one value, as in the
    reference (and every attribute row still reads back its own value)."""
    import struct

    from exrbuild import attr, required, single_part

    def chlist_padded(pad: bytes) -> bytes:
        return b"R\0" + struct.pack("<iB", 1, 0) + pad + struct.pack("<ii", 1, 1) + b"\0"

    base = [a for a in required() if not a.startswith(b"channels\0")]
    variants = [
        (struct.pack("<I", 0x7FC00000), b"\0\0\0"),
        (struct.pack("<I", 0x7FC00001), b"\x01\x02\x03"),
        (struct.pack("<I", 0x7FC00000), b"\0\0\0"),
    ]
    paths = []
    for i, (nan, pad) in enumerate(variants):
        extra = [attr("channels", "chlist", chlist_padded(pad)), attr("nanValue", "float", nan)]
        p = tmp_path / f"v{i}.exr"
        p.write_bytes(single_part(extra, base=base))
        paths.append(str(p))
    ref = assert_same(paths)
    rows = ref.attribute_rows()
    for name in ("nanValue", "channels"):
        picked = rows.filter(pa.compute.equal(rows["attr_name"], name))
        assert picked.num_rows == 3 and len(set(picked["value_json"].to_pylist())) == 1, name
        assert len(set(ref.attributes.filter(pa.compute.equal(rows["attr_name"], name))["value_index"]
                       .to_pylist())) == 1, name


def test_cold_chunk_scans_the_same(tmp_path):
    """Pages evicted first (the scanner then reads ahead with posix_fadvise): the same columns."""
    from gen_tree import generate

    require_native()
    generate(tmp_path, 24, templates=3, seed=5)
    paths = sorted(str(p) for p in tmp_path.rglob("*.exr"))
    warm = scan_chunk(paths, native=True)
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    cold = scan_chunk(paths, native=True)
    for name, table in warm.tables().items():
        assert cold.tables()[name].equals(table), name
    assert warm.files.num_rows == 24
