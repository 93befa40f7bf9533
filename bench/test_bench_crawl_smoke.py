"""pytest-benchmark smoke test: crawl a ~300-file generated tree in-process into a fresh DuckDB catalog.

    python -m pytest -q bench/test_bench_crawl_smoke.py --benchmark-columns=median,ops

Asserts correctness only (row counts against the pure-Python reference parser), never
time. Each round crawls into its own new catalog, so every round inserts every file.
The comparative numbers (crawl vs baseline vs floor) are bench/bench_crawl.py's job.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from exr_inspector.catalog.base import open_catalog
from exr_inspector.crawl.pipeline import crawl
from exr_inspector.crawl.pool import ReaderPool
from exr_inspector.exr import ExrError, read_header

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_tree import generate  # noqa: E402

FILES, DAMAGED = 300, 4
TABLES = ("files", "parts", "channels", "attributes", "crawl_errors", "crawl_runs")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crawl-smoke-tree")
    generate(root, FILES, templates=20, seed=3, damaged=DAMAGED)
    return root


@pytest.fixture(scope="module")
def expected(tree: Path) -> dict[str, int]:
    """Row counts from the pure-Python reference parser, independent of the crawl's native scanner."""
    n = {t: 0 for t in TABLES}
    for path in sorted(tree.rglob("*.exr")):
        try:
            parts = read_header(str(path), native=False).header["parts"]
        except ExrError:
            n["crawl_errors"] += 1
            continue
        n["files"] += 1
        n["parts"] += len(parts)
        n["attributes"] += sum(len(p) for p in parts)
        for attrs in parts:
            chlist = next((a["value"] for a in attrs if a["name"] == "channels" and a["type"] == "chlist"), [])
            n["channels"] += len(chlist)
    n["crawl_runs"] = 1
    return n


@pytest.mark.parametrize("workers", [0, 2])
def test_crawl_tree(benchmark, tree: Path, expected: dict[str, int], tmp_path: Path, workers: int) -> None:
    assert expected["files"] == FILES and expected["crawl_errors"] == DAMAGED
    counter = itertools.count()
    counts: list[dict[str, int]] = []

    def fresh_catalog():
        return (str(tmp_path / f"round{next(counter)}.duckdb"),), {}

    def crawl_once(db: str):
        # The pool forks before the catalog opens, as the CLI does.
        with ReaderPool(workers) as pool, open_catalog(db) as cat:
            summary = crawl([str(tree)], cat, pool=pool)
            counts.append({t: cat.count(t) for t in TABLES})
        return summary

    summary = benchmark.pedantic(crawl_once, setup=fresh_catalog, rounds=3, iterations=1, warmup_rounds=1)

    assert summary.status == "completed"
    assert summary.files == FILES and summary.errors == DAMAGED
    assert summary.inserted == FILES and summary.unchanged == summary.replaced == 0
    assert (summary.parts, summary.channels, summary.attributes) == (
        expected["parts"], expected["channels"], expected["attributes"])
    assert counts and all(c == expected for c in counts), counts
    benchmark.extra_info["files"] = FILES + DAMAGED
    if benchmark.stats:  # None under --benchmark-disable (one plain call)
        benchmark.extra_info["files_per_s"] = (FILES + DAMAGED) / benchmark.stats.stats.median
