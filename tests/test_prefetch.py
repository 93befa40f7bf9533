"""Read-ahead hints for cold trees: what gets advised, that warm trees are left alone, and that
a crawl's result does not depend on them."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from exr_inspector.catalog import DEFAULT_CATALOG, is_new
from exr_inspector.catalog.base import open_catalog
from exr_inspector.crawl import prefetch
from exr_inspector.crawl.pipeline import crawl
from exr_inspector.crawl.pool import ReaderPool
from exr_inspector.crawl.walk import Walker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

needs_native = pytest.mark.skipif(prefetch._core is None, reason="native module not built")
needs_fadvise = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    from gen_tree import generate

    root = tmp_path_factory.mktemp("pf_tree")
    generate(root, 60, templates=6, seed=5, damaged=3)
    return root


def files_of(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*.exr"))


def warm(paths: list[str]) -> None:
    for p in paths:
        Path(p).read_bytes()


def evict(paths: list[str]) -> bool:
    """Drop the files' pages; True if that took here (not on tmpfs, say). An empty file reads as
    cached (there is nothing to wait for), so callers pass non-empty ones."""
    from bench_crawl import _Residency
    from bench_crawl import evict as drop_pages

    drop_pages(paths)
    # mincore, not the RWF_NOWAIT probe: a NOWAIT miss may start the kernel's readahead, which
    # would warm the files again before the code under test looks at them.
    fraction = _Residency()(paths)
    if fraction is not None:
        return fraction == 0
    ok = not any(prefetch._resident(p) for p in paths)
    drop_pages(paths)
    return ok


IMPLS = [pytest.param(prefetch.advise, id="native", marks=needs_native),
         pytest.param(prefetch._advise_py, id="python")]


@needs_fadvise
@pytest.mark.parametrize("advise", IMPLS)
def test_warm_files_are_left_alone(tree, advise):
    paths = files_of(tree)
    warm(paths)
    assert advise(paths, 8, 65536) == 0


@needs_fadvise
@pytest.mark.parametrize("advise", IMPLS)
def test_probe_zero_advises_every_file_that_opens(tree, tmp_path, advise):
    paths = files_of(tree)[:20]
    odd = [str(tmp_path / "gone.exr"), str(tree), "bad\x00path", *paths]
    assert advise(odd, 0, 65536) == len(paths) + 1  # the directory opens too; a hint on it is harmless


@needs_fadvise
@pytest.mark.parametrize("advise", IMPLS)
def test_unopenable_paths_are_not_probed(tree, tmp_path, advise):
    """Missing files in front of a warm chunk neither count as probes nor make it look cold."""
    paths = files_of(tree)[:10]
    warm(paths)
    assert advise([str(tmp_path / f"gone{i}.exr") for i in range(20)] + paths, 8, 65536) == 0
    assert advise([str(tmp_path / "gone.exr")], 8, 65536) == 0


@needs_fadvise
@pytest.mark.parametrize("advise", IMPLS)
def test_evicted_files_are_advised_and_come_back(tree, advise):
    paths = [p for p in files_of(tree) if os.path.getsize(p)][:30]
    # A NOWAIT probe that misses starts the kernel's readahead, and a VM's disk (the host's
    # cache behind it) can land it before the probe's own read gives up: that file then reads
    # as cached and the chunk as warm (once in six full `make test` runs here). So evict again
    # and retry a few times; a chunk is advised whole or not at all.
    for _ in range(5):
        if not evict(paths):
            pytest.skip("this file system keeps the pages (fadvise DONTNEED does not evict)")
        got = advise(paths, 8, 65536)
        assert got in (0, len(paths))
        if got:
            break
    assert got == len(paths)
    # WILLNEED starts the reads; once they land, the same chunk probes warm.
    for p in paths:
        Path(p).read_bytes()
    assert advise(paths, 8, 65536) == 0


def test_prefetcher_passes_chunks_through_in_order(tree):
    chunks = [files_of(tree)[i:i + 7] for i in range(0, 40, 7)]
    with prefetch.Prefetcher() as pf:
        assert list(pf.feed(iter(chunks))) == chunks
    assert not pf._thread.is_alive()


def test_prefetcher_failures_never_reach_the_crawl(monkeypatch, tree):
    calls = []
    done = threading.Semaphore(0)

    def broken(paths, *a):
        calls.append(len(paths))
        done.release()
        raise OSError("storage said no")

    monkeypatch.setattr(prefetch, "advise", broken)
    chunks = [files_of(tree)[:5], files_of(tree)[5:9]]
    pf = prefetch.Prefetcher()
    for chunk in chunks:  # one at a time: close() drops what is still queued
        assert list(pf.feed([chunk])) == [chunk]
        assert done.acquire(timeout=10)
    assert pf._thread.is_alive()  # the failure did not end the thread
    pf.close()
    assert calls == [5, 4]


def test_prefetcher_drops_chunks_when_behind(monkeypatch, tree):
    """A full queue never blocks the crawl: the chunk goes unadvised."""
    gate = threading.Event()
    monkeypatch.setattr(prefetch, "advise", lambda paths, *a: gate.wait(5) and 0)
    pf = prefetch.Prefetcher(depth=2)
    out = list(pf.feed([["a"]] * 50))
    assert len(out) == 50
    gate.set()
    pf.close()


def test_prefetch_walk_stops_at_a_warm_chunk(monkeypatch, tree):
    seen = []
    real = prefetch.advise

    def spy(paths, *a):
        seen.append(len(paths))
        return real(paths, *a)

    monkeypatch.setattr(prefetch, "advise", spy)
    warm(files_of(tree))
    prefetch.prefetch_walk(Walker([str(tree)], chunk_size=16)).join(10)
    assert seen == [16]


def test_prefetch_walk_is_bounded(monkeypatch, tree):
    seen = []
    monkeypatch.setattr(prefetch, "advise", lambda paths, *a: seen.append(len(paths)) or len(paths))
    prefetch.prefetch_walk(Walker([str(tree)], chunk_size=16), limit=40).join(10)
    assert seen == [16, 16, 16]


def test_prefetch_walk_survives_a_vanished_root(tmp_path):
    t = prefetch.prefetch_walk(Walker([str(tmp_path / "gone")]))
    t.join(10)
    assert not t.is_alive()


def test_is_new(tmp_path, monkeypatch):
    db = tmp_path / "c.duckdb"
    assert is_new(str(db)) and is_new(f"duckdb://{db}") and is_new(":memory:")
    db.write_bytes(b"")
    assert not is_new(str(db)) and not is_new(f"duckdb://{db}")
    assert not is_new("vast://bucket/schema")
    monkeypatch.chdir(tmp_path)
    assert is_new(None) and is_new(DEFAULT_CATALOG)
    (tmp_path / DEFAULT_CATALOG).write_bytes(b"")
    assert not is_new(None)


def test_crawl_is_the_same_with_or_without_prefetch(tree, tmp_path):
    def rows(db, flag):
        with ReaderPool(2) as pool, open_catalog(str(db)) as cat:
            s = crawl([str(tree)], cat, pool=pool, prefetch=flag)
            files = cat.query("SELECT file_path, header_hash FROM files ORDER BY 1").to_pylist()
            errors = cat.query("SELECT path, error_code FROM crawl_errors ORDER BY 1").to_pylist()
        return s.files, s.errors, files, errors

    a, b = rows(tmp_path / "a.duckdb", True), rows(tmp_path / "b.duckdb", False)
    assert a == b and a[0] > 0 and a[1] > 0


def test_cli_no_prefetch_crawls_the_same(tree, tmp_path):
    import json
    import shutil
    import subprocess

    exe = shutil.which("exr-inspector", path=str(Path(sys.executable).parent))
    out = []
    for flag in ([], ["--no-prefetch"]):
        r = subprocess.run([exe, "crawl", str(tree), "--catalog", str(tmp_path / f"c{len(flag)}.duckdb"), "--json",
                            *flag], capture_output=True, text=True, check=True)
        s = json.loads(r.stdout)
        out.append((s["files"], s["errors"], s["parts"], s["channels"], s["status"]))
    assert out[0] == out[1] and out[0][0] > 0
