"""A chunk of huge headers never sits in memory at once: the scanner (C, or the Python
reference without the native module) stops once its rows hold MAX_CHUNK_BYTES, and the reader
scans the rest of the chunk as further batches. Every file still comes back exactly once,
with the same rows."""

from __future__ import annotations

import datetime as dt

import pytest

from exr_inspector.catalog.base import open_catalog
from exr_inspector.crawl import columns
from exr_inspector.crawl.columns import scan_chunk
from exr_inspector.crawl.pipeline import crawl
from exr_inspector.crawl.pool import ReaderPool, process_chunk, process_parts
from exr_inspector.exr import native_available

from exrbuild import attr, single_part


@pytest.fixture(params=[True, False], ids=["native", "python"])
def native(request) -> bool:
    if request.param and not native_available():
        pytest.skip("native scanner not built")
    return request.param


BIG = 300_000  # bytes of one string attribute: its value_json and key take ~2x that


@pytest.fixture()
def big_files(tmp_path):
    paths = []
    for i in range(6):
        p = tmp_path / f"big_{i}.exr"
        p.write_bytes(single_part([attr("comments", "string", bytes([97 + i]) * BIG)]))
        paths.append(str(p))
    (tmp_path / "bad.exr").write_bytes(b"not an exr")
    paths.insert(3, str(tmp_path / "bad.exr"))
    return paths


def test_scan_stops_at_the_budget_after_at_least_one_file(big_files, native) -> None:
    whole = scan_chunk(big_files, native=native)
    assert whole.consumed == len(big_files) and whole.files.num_rows == 6 and whole.errors.num_rows == 1
    part = scan_chunk(big_files, native=native, max_chunk_bytes=1 << 20)
    assert 1 <= part.consumed < len(big_files)
    assert part.files["file_path"].to_pylist() == [p for p in big_files[:part.consumed] if "bad" not in p]
    assert scan_chunk(big_files, native=native, max_chunk_bytes=1).consumed == 1  # one file always goes through


def test_the_rest_becomes_further_batches_with_the_same_rows(big_files, monkeypatch, native) -> None:
    now = dt.datetime(2026, 1, 1)
    one = process_chunk(big_files, now, "run", native)
    monkeypatch.setattr(columns, "MAX_CHUNK_BYTES", 1 << 20)
    parts = list(process_parts(big_files, now, "run", native))
    assert len(parts) > 1
    assert sum(b.num_files for b in parts) == one.num_files == 6
    assert sum(b.errors.num_rows for b in parts) == one.errors.num_rows == 1
    for name in ("files", "attributes"):
        split = [r for b in parts for r in getattr(b, name).drop_columns(["last_inspected", "first_seen"]
                 if name == "files" else []).to_pylist()]
        full = getattr(one, name).drop_columns(["last_inspected", "first_seen"] if name == "files" else []).to_pylist()
        assert split == full, name
    assert process_chunk(big_files, now, "run", native).files.equals(one.files)  # concatenated: one batch again


def test_crawl_with_a_small_budget_loses_nothing(big_files, tmp_path, monkeypatch, native) -> None:
    monkeypatch.setattr(columns, "MAX_CHUNK_BYTES", 1 << 20)  # before the fork: the readers inherit it
    with ReaderPool(2, native=native) as pool, open_catalog(str(tmp_path / "c.duckdb")) as cat:
        summary = crawl([str(tmp_path)], cat, pool=pool)
        assert summary.files == 6 and summary.errors == 1 and summary.batches >= 1
        assert cat.count("files") == 6 and cat.count("crawl_errors") == 1
        values = cat.query("SELECT length(value_text) AS n FROM attributes WHERE attr_name = 'comments'")
        assert values["n"].to_pylist() == [BIG] * 6
