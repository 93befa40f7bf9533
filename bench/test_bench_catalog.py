"""Catalog upsert throughput on a DuckDB file (``make bench``: ``pytest bench --benchmark-only``).

One batch = 5k files x 3 parts x 10 channels x 25 attributes per part (545k rows
across the four file tables). Measured: a first insert into an empty catalog, an
unchanged re-upsert (audit columns only) and a changed re-upsert (every file's
rows replaced). Rows/s and files/s land in the benchmark's extra_info.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from catalog_contract import make_batch, paths_of  # noqa: E402
from exr_inspector.catalog.duckdb import DuckDBCatalog  # noqa: E402

N_FILES, N_PARTS, N_CHANNELS, N_ATTRS = 5000, 3, 10, 25
ROUNDS = 5


@pytest.fixture(scope="module")
def batch():
    return make_batch(paths_of(N_FILES), n_parts=N_PARTS, n_channels=N_CHANNELS, n_attrs=N_ATTRS)


def _rows(batch) -> int:
    return sum(t.num_rows for t in (batch.files, batch.parts, batch.channels, batch.attributes))


def _report(benchmark, rows: int) -> None:
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(rows=rows, rows_per_s=round(rows / median), files_per_s=round(N_FILES / median))
    print(f"\n{benchmark.name}: {rows / median:,.0f} rows/s, {N_FILES / median:,.0f} files/s (median {median:.3f}s)")


def test_upsert_first_insert(benchmark, batch, tmp_path):
    counter = itertools.count()

    def fresh():
        cat = DuckDBCatalog(str(tmp_path / f"first{next(counter)}.duckdb"))
        return (cat,), {}

    def run(cat):
        stats = cat.upsert(batch)
        cat.close()
        assert stats.inserted == N_FILES

    benchmark.pedantic(run, setup=fresh, rounds=ROUNDS, iterations=1)
    _report(benchmark, _rows(batch))


def test_upsert_unchanged(benchmark, batch, tmp_path):
    with DuckDBCatalog(str(tmp_path / "same.duckdb")) as cat:
        cat.upsert(batch)
        stats = benchmark.pedantic(cat.upsert, args=(batch,), rounds=ROUNDS * 2, iterations=1)
        assert stats.unchanged == N_FILES
    _report(benchmark, batch.files.num_rows)


def test_upsert_changed(benchmark, batch, tmp_path):
    hashes = (f"h{i}" for i in itertools.count(2))

    def changed():
        b = make_batch(paths_of(N_FILES), next(hashes), n_parts=N_PARTS, n_channels=N_CHANNELS, n_attrs=N_ATTRS)
        return (b,), {}

    with DuckDBCatalog(str(tmp_path / "changed.duckdb")) as cat:
        cat.upsert(batch)

        def run(b):
            assert cat.upsert(b).replaced == N_FILES

        benchmark.pedantic(run, setup=changed, rounds=ROUNDS, iterations=1)
        assert cat.count("attributes") == N_FILES * N_PARTS * N_ATTRS
    _report(benchmark, _rows(batch))
