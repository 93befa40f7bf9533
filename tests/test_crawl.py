"""End-to-end crawls into a real DuckDB catalog: counts, errors, idempotence, crashes, determinism."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from exr_inspector.catalog.base import open_catalog
from exr_inspector.crawl.pipeline import crawl
from exr_inspector.crawl.pool import FAULT_KILL, FAULT_ONCE, READER_NICE, ReaderPool
from exr_inspector.crawl.walk import Walker
from exr_inspector.exr import ExrError, read_header

from conftest import corpus_root

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
EXE = shutil.which("exr-inspector", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    from gen_tree import generate

    root = tmp_path_factory.mktemp("tree")
    generate(root, 120, templates=10, seed=11, damaged=5)
    return root


def run_crawl(roots, db, workers=2, **kw):
    with ReaderPool(workers) as pool, open_catalog(str(db)) as cat:
        summary = crawl([str(r) for r in roots], cat, pool=pool, **kw)
        counts = {t: cat.count(t) for t in ("files", "parts", "channels", "attributes", "crawl_errors", "crawl_runs")}
    return summary, counts


def expected_counts(paths):
    files = parts = channels = attrs = 0
    errors = {}
    for p in paths:
        try:
            h = read_header(p, native=False).header
        except ExrError as e:
            errors[p] = e.code
            continue
        files += 1
        parts += len(h["parts"])
        attrs += sum(len(a) for a in h["parts"])
        for a in h["parts"]:
            ch = next((x["value"] for x in a if x["name"] == "channels" and x["type"] == "chlist"), [])
            channels += len(ch)
    return files, parts, channels, attrs, errors


def test_corpus_crawl_counts_match_parser(tmp_path):
    root = corpus_root()
    if root is None:
        pytest.skip("EXR corpus not found")
    # the corpus mixes .exr files and extension-less damaged files: crawl both kinds
    paths = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".exr")
    summary, counts = run_crawl([root], tmp_path / "c.duckdb")
    files, parts, channels, attrs, errors = expected_counts(paths)
    assert summary.status == "completed"
    assert (counts["files"], counts["parts"], counts["channels"], counts["attributes"]) == (files, parts, channels, attrs)
    assert counts["crawl_errors"] == len(errors) == summary.errors
    with open_catalog(str(tmp_path / "c.duckdb")) as cat:
        rows = cat.query("SELECT path, error_code FROM crawl_errors").to_pylist()
        assert {r["path"]: r["error_code"] for r in rows} == errors
        run = cat.query("SELECT status, counts FROM crawl_runs").to_pylist()
        assert run[0]["status"] == "completed" and json.loads(run[0]["counts"])["files"] == files


def test_recrawl_is_idempotent_and_changes_replace(tree, tmp_path):
    db = tmp_path / "c.duckdb"
    s1, c1 = run_crawl([tree], db)
    assert s1.inserted == 120 and s1.errors == 5 and c1["files"] == 120
    s2, c2 = run_crawl([tree], db, full=True)  # --full parses everything again
    assert s2.unchanged == 120 and s2.inserted == s2.replaced == s2.skipped == 0
    assert {k: v for k, v in c2.items() if k not in ("crawl_errors", "crawl_runs")} == {
        k: v for k, v in c1.items() if k not in ("crawl_errors", "crawl_runs")}
    with open_catalog(str(db)) as cat:
        assert cat.query("SELECT DISTINCT inspection_count FROM files").to_pylist() == [{"inspection_count": 2}]
    # incremental (the default): nothing changed on disk, so no header is opened; failed files are retried
    s2b, c2b = run_crawl([tree], db)
    assert (s2b.skipped, s2b.files, s2b.unchanged, s2b.errors, s2b.walked) == (120, 0, 0, 5, 125)
    assert c2b["files"] == 120 and c2b["attributes"] == c1["attributes"]
    # change one header: a different (longer) owner string; the file's rows are replaced
    victim = sorted(tree.rglob("*.exr"))[0]
    data = victim.read_bytes()
    try:
        read_header(victim)
    except ExrError:
        victim = sorted(tree.rglob("*.exr"))[1]
        data = victim.read_bytes()
    mutated = data.replace(b"owner\x00string\x00", b"ownr2\x00string\x00")  # every part
    assert mutated != data
    victim.write_bytes(mutated)
    s3, c3 = run_crawl([tree], db)
    assert (s3.replaced, s3.unchanged, s3.skipped) == (1, 0, 119)
    assert c3["attributes"] == c1["attributes"] and c3["files"] == 120
    with open_catalog(str(db)) as cat:
        names = cat.query(f"SELECT attr_name FROM attributes WHERE file_path = '{victim}'")["attr_name"].to_pylist()
        assert "ownr2" in names and "owner" not in names
        row = cat.query(f"SELECT inspection_count FROM files WHERE file_path = '{victim}'").to_pylist()
        assert row == [{"inspection_count": 3}]


def test_worker_killed_mid_chunk_loses_nothing(tree, tmp_path, monkeypatch):
    good = [p for p in sorted(tree.rglob("*.exr")) if _parses(p)]
    monkeypatch.setenv(FAULT_KILL, str(good[7]))
    monkeypatch.setenv(FAULT_ONCE, str(tmp_path / "killed-once"))
    summary, counts = run_crawl([tree], tmp_path / "c.duckdb", chunk_size=16)
    assert (tmp_path / "killed-once").exists() and summary.worker_restarts >= 1
    assert counts["files"] == 120 and summary.errors == 5  # only the damaged files


def test_file_that_always_kills_its_reader_becomes_an_error(tree, tmp_path, monkeypatch):
    good = [p for p in sorted(tree.rglob("*.exr")) if _parses(p)]
    monkeypatch.setenv(FAULT_KILL, str(good[3]))
    summary, counts = run_crawl([tree], tmp_path / "c.duckdb", chunk_size=16)
    assert counts["files"] == 119
    with open_catalog(str(tmp_path / "c.duckdb")) as cat:
        died = cat.query("SELECT path FROM crawl_errors WHERE error_code = 'worker_died'")["path"].to_pylist()
    assert died == [str(good[3])]


def _parses(p) -> bool:
    try:
        read_header(p)
        return True
    except ExrError:
        return False


def test_embeddings_identical_across_worker_counts(tree, tmp_path):
    def vectors(workers):
        db = tmp_path / f"w{workers}.duckdb"
        run_crawl([tree], db, workers=workers, chunk_size=7 + workers)
        with open_catalog(str(db)) as cat:
            t = cat.query("SELECT file_path, header_hash, metadata_embedding FROM files ORDER BY file_path")
            c = cat.query("SELECT file_path, channel_name, channel_fingerprint FROM channels "
                          "ORDER BY file_path, part_index, channel_name")
        return (t["file_path"].to_pylist(), t["header_hash"].to_pylist(),
                np.array(t["metadata_embedding"].to_pylist(), dtype=np.float32).tobytes(),
                np.array(c["channel_fingerprint"].to_pylist(), dtype=np.float32).tobytes())

    assert vectors(0) == vectors(2)


def test_walker_loops_excludes_and_extensions(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.EXR").write_bytes(b"")
    (tmp_path / "a" / "y.exr").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_bytes(b"")
    (tmp_path / "a" / "tmp").mkdir()
    (tmp_path / "a" / "tmp" / "z.exr").write_bytes(b"")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")  # a loop back to the top
    w = Walker([str(tmp_path)], excludes=["*/tmp"], chunk_size=2)
    found = [p for chunk in w for p in chunk]
    assert sorted(os.path.basename(p) for p in found) == ["x.EXR", "y.exr"]
    assert all(os.path.isabs(p) for p in found) and not w.errors
    # overlapping roots reach each file once
    overlap = Walker([str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a" / "y.exr"), str(tmp_path)],
                     excludes=["*/tmp"])
    assert sorted(p for chunk in overlap for p in chunk) == sorted(found)


def cli(*args, cwd=None):
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd)


def test_cli_exit_codes_and_json(tree, tmp_path):
    db = tmp_path / "c.duckdb"
    ok = cli("crawl", str(tree), "--catalog", str(db), "--json", "--workers", "1")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["files"] == 120 and summary["errors"] == 5 and summary["status"] == "completed"
    assert cli("crawl", str(tree), "--catalog", str(db), "--strict").returncode == 1
    assert cli("crawl", str(tmp_path / "nope"), "--catalog", str(db)).returncode == 2
    bad = cli("crawl", str(tree), "--catalog", str(tmp_path / "missing-dir" / "c.duckdb"))
    assert bad.returncode == 3 and "catalog" in bad.stderr
    q = cli("query", "SELECT count(*) AS n FROM files", "--catalog", str(db), "--json")
    assert json.loads(q.stdout) == {"n": 120}
    first = json.loads(cli("query", "SELECT file_path FROM files ORDER BY 1 LIMIT 1", "--catalog", str(db),
                           "--json").stdout)["file_path"]
    sim = cli("similar", first, "-k", "3", "--catalog", str(db), "--json")
    rows = [json.loads(x) for x in sim.stdout.splitlines()]
    assert sim.returncode == 0 and len(rows) == 3 and first not in [r["file_path"] for r in rows]
    assert rows[0]["score"] >= rows[-1]["score"]
    default = cli("crawl", str(tree), "--workers", "0", cwd=tmp_path)
    assert default.returncode == 0 and (tmp_path / "exr_catalog.duckdb").exists()


def test_catalog_failure_mid_crawl_stops_cleanly(tree, tmp_path, monkeypatch):
    """A batch the catalog refuses is rolled back, the crawl stops with the error, the run says failed."""
    from exr_inspector.catalog.base import CatalogError

    db = tmp_path / "c.duckdb"
    with ReaderPool(2) as pool, open_catalog(str(db)) as cat:
        real = cat.upsert_stream
        calls = []

        def flaky(batches):
            batches = list(batches)
            calls.append(sum(b.num_files for b in batches))
            if len(calls) == 2:
                raise CatalogError("disk full (injected)")
            return real(batches)

        monkeypatch.setattr(cat, "upsert_stream", flaky)
        with pytest.raises(CatalogError, match="injected"):
            crawl([str(tree)], cat, pool=pool, chunk_size=8, batch_files=20)  # several batches
        monkeypatch.setattr(cat, "upsert_stream", real)
        assert cat.count("files") == calls[0]  # only the first batch is in
        assert cat.query("SELECT status FROM crawl_runs").to_pylist() == [{"status": "failed"}]


def test_reader_exception_becomes_error_rows(tree, tmp_path, monkeypatch):
    """A bug in a reader fails its chunk's files as internal_error rows; the crawl completes."""
    from exr_inspector.crawl import pool as pool_mod

    real = pool_mod.build_batch
    victim = str(sorted(tree.rglob("*.exr"))[0].parent)

    def buggy(raw, now, run_id):
        if any(p.startswith(victim) for p in raw.files["file_path"].to_pylist()):
            raise ValueError("injected reader bug")
        return real(raw, now, run_id)

    monkeypatch.setattr(pool_mod, "build_batch", buggy)
    summary, counts = run_crawl([tree], tmp_path / "c.duckdb", workers=2, chunk_size=10)
    with open_catalog(str(tmp_path / "c.duckdb")) as cat:
        bad = cat.query("SELECT count(*) AS n FROM crawl_errors WHERE error_code = 'internal_error'").to_pylist()
        failed = cat.query("SELECT count(DISTINCT path) AS n FROM crawl_errors").to_pylist()[0]["n"]
    assert summary.status == "completed" and bad[0]["n"] > 0
    assert counts["files"] + failed == 125  # every file is either in the catalog or an error (some damaged
    # files share a chunk with the victim directory and are internal_error rows instead)


def test_stat_names_native_matches_os_stat(tmp_path, monkeypatch):
    from exr_inspector.crawl import walk

    (tmp_path / "a.exr").write_bytes(b"x" * 10)
    (tmp_path / "b.exr").write_bytes(b"y" * 3)
    (tmp_path / "link.exr").symlink_to(tmp_path / "a.exr")
    (tmp_path / "dangling.exr").symlink_to(tmp_path / "gone.exr")
    names = ["a.exr", "b.exr", "link.exr", "dangling.exr", "missing.exr", "caf\u00e9.exr"]
    (tmp_path / names[-1]).write_bytes(b"z")
    native = walk.stat_names(str(tmp_path), names)
    monkeypatch.setattr(walk, "_core", None)
    python = walk.stat_names(str(tmp_path), names)
    assert native.tolist() == python.tolist()
    a = os.stat(tmp_path / "a.exr")
    assert native[0].tolist() == native[2].tolist() == [10, a.st_mtime_ns, a.st_ino]  # symlinks followed
    assert native[3].tolist() == native[4].tolist() == [-1, -1, -1]
    assert walk.stat_names(str(tmp_path / "nodir"), ["a.exr"]).tolist() == [[-1, -1, -1]]
    assert walk.stat_names(str(tmp_path), []).shape == (0, 3)


def test_native_walk_matches_the_python_walk(tmp_path, monkeypatch):
    """The C directory listing (no --exclude) finds, orders and stats exactly what scandir does:
    extension case, symlinked files and directories, loops, dangling links, odd names, depth, shards."""
    from exr_inspector.crawl import walk

    (tmp_path / "s" / "deep" / "er").mkdir(parents=True)
    for rel in ("s/a.exr", "s/B.EXR", "s/c.Exr", "s/notes.txt", "s/deep/d.exr", "s/deep/er/e.exr", "top.exr",
                "s/caf\u00e9.exr", "s/.hidden.exr", "s/x.exr.bak", "s/deep/f.tif"):
        (tmp_path / rel).write_bytes(b"x" * len(rel))
    (tmp_path / "s" / "link.exr").symlink_to(tmp_path / "top.exr")
    (tmp_path / "s" / "dangling.exr").symlink_to(tmp_path / "gone.exr")
    (tmp_path / "s" / "deep" / "dirlink").symlink_to(tmp_path / "s" / "deep" / "er")
    (tmp_path / "s" / "deep" / "er" / "loop").symlink_to(tmp_path / "s")
    bad = os.fsencode(str(tmp_path / "s")) + b"/bad\xff.exr"
    with open(bad, "wb") as f:
        f.write(b"x")

    def walk_all(**kw):
        w = walk.Walker([str(tmp_path)], chunk_size=3, extensions=(".exr", "tif"), **kw)
        chunks = list(w.chunks())
        return ([(c.paths, c.size, c.mtime_ns, c.inode) for c in chunks],
                [(e.path, e.code) for e in w.errors])

    for kw in ({}, {"max_depth": 1}, {"shard": (0, 2)}, {"shard": (1, 2)}):
        native = walk_all(**kw)
        with monkeypatch.context() as m:
            m.setattr(walk, "_core", None)
            python = walk_all(**kw)
        assert native == python, kw
    paths = [p for c in walk_all()[0] for p in c[0]]
    names = {os.path.basename(p) for p in paths}
    assert {"a.exr", "B.EXR", "c.Exr", "link.exr", "dangling.exr", "f.tif", "caf\u00e9.exr"} <= names
    assert "notes.txt" not in names and "x.exr.bak" not in names
    assert any(code == "bad_path" for _, code in walk_all()[1])


def test_readers_run_below_the_writers_priority():
    """Readers are niced, so the writer (this process) is never starved by its own readers."""
    with ReaderPool(2) as pool:
        niceness = {pool._executor.submit(os.nice, 0).result() for _ in range(4)}
    assert niceness == {min(19, os.nice(0) + READER_NICE)}


def test_transactions_default_to_the_catalogs_size(tree, tmp_path, monkeypatch):
    """Without batch_files a crawl writes transactions of the catalog's own size (DuckDB: one
    row group of file rows, which then skip the WAL); an explicit size still wins."""
    from exr_inspector.catalog.duckdb import ROW_GROUP_ROWS, DuckDBCatalog

    assert DuckDBCatalog.batch_files == ROW_GROUP_ROWS
    n = len(list(tree.rglob("*.exr")))
    batches = {}
    with ReaderPool(1) as pool:
        for preferred, given in ((40, None), (ROW_GROUP_ROWS, 40), (40, ROW_GROUP_ROWS), (ROW_GROUP_ROWS, None)):
            with open_catalog(str(tmp_path / f"c{preferred}-{given}.duckdb")) as cat:
                monkeypatch.setattr(cat, "batch_files", preferred)
                s = crawl([str(tree)], cat, pool=pool, chunk_size=8, batch_files=given)
                assert s.files + s.errors == n
                batches[preferred, given] = s.batches
    assert batches[40, None] == batches[ROW_GROUP_ROWS, 40] > 2
    assert batches[40, ROW_GROUP_ROWS] == batches[ROW_GROUP_ROWS, None] == 1


def _spools(run_id: str) -> list[str]:
    from exr_inspector.crawl import pool as pool_mod

    return glob.glob(pool_mod._spool_prefix(run_id) + "*")


def _spools_left(run_id: str, quiet: float = 1.0, timeout: float = 30.0) -> list[str]:
    """The run's spool files once none has been seen for ``quiet`` seconds (readers still on a
    chunk of the stopped run write theirs a moment later), or whatever is left at ``timeout``."""
    deadline, clear_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if _spools(run_id):
            clear_since = None
        elif clear_since is None:
            clear_since = time.monotonic()
        elif time.monotonic() - clear_since >= quiet:
            return []
        time.sleep(0.01)
    return _spools(run_id)


def test_a_failed_crawl_leaves_no_spool_files(tree, tmp_path, monkeypatch):
    """Results still in the readers when a crawl fails are removed once they arrive, not left
    in shared memory (tmpfs) until the next reboot; closing the pool sweeps whatever remains."""
    from exr_inspector.catalog.base import CatalogError

    with ReaderPool(2) as pool, open_catalog(str(tmp_path / "c.duckdb")) as cat:
        real = cat.upsert_stream

        def failing(batches):
            next(iter(batches))  # the first chunk arrived: the pool is full of others
            raise CatalogError("disk full (injected)")

        monkeypatch.setattr(cat, "upsert_stream", failing)
        with pytest.raises(CatalogError, match="injected"):
            crawl([str(tree)], cat, pool=pool, chunk_size=4)
        monkeypatch.setattr(cat, "upsert_stream", real)
        run_id = cat.query("SELECT run_id FROM crawl_runs").to_pylist()[0]["run_id"]
        assert _spools_left(run_id) == []  # with the pool still open: in-flight chunks finish
        s = crawl([str(tree)], cat, pool=pool, chunk_size=4)  # the same pool crawls on
        assert s.files + s.errors == len(list(tree.rglob("*.exr")))
    assert _spools(s.run_id) == []


def test_results_abandoned_mid_run_are_removed(tree):
    """The pool's own contract: a consumer that stops after one chunk while five more are in
    the readers leaves no spool file behind, with the pool still open."""
    import datetime as dt

    paths = sorted(str(p) for p in tree.rglob("*.exr"))
    with ReaderPool(2) as pool:
        run = pool.run(iter([paths[i:i + 4] for i in range(0, len(paths), 4)]), dt.datetime(2026, 1, 1), "f" * 32)
        next(run)
        run.close()
        assert _spools_left("f" * 32) == []
        assert sum(len(p) for p, _ in pool.run(iter([paths[:8]]), dt.datetime(2026, 1, 1), "e" * 32)) == 8


def test_spools_of_killed_crawls_are_swept(tmp_path):
    """A crawl killed outright (its readers die with it) cannot clean up: the next pool removes
    spool files whose reader is gone and which are older than SPOOL_STALE_S, and nothing else."""
    from exr_inspector.crawl import pool as pool_mod

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    old = time.time() - pool_mod.SPOOL_STALE_S - 60
    made = {}
    for name, pid, mtime in (("stale", dead, old), ("recent", dead, None), ("live", str(os.getpid()), old),
                             ("foreign", None, old)):
        run = "0" * 31 + name[0]
        path = os.path.join(pool_mod._SHM, f"exr-inspector-{run}-{pid}-{name}.arrows" if pid
                            else f"exr-inspector-{run}-notapid.arrows")
        Path(path).write_bytes(b"spool")
        if mtime:
            os.utime(path, (mtime, mtime))
        made[name] = path
    try:
        with ReaderPool(1):
            pass
        assert {k for k, p in made.items() if os.path.exists(p)} == {"recent", "live", "foreign"}
        assert pool_mod.sweep_stale_spools() == 0
    finally:
        for p in made.values():
            with contextlib.suppress(OSError):
                os.unlink(p)


def test_a_zombie_reader_counts_as_dead():
    """A killed crawl's readers linger as zombies until init reaps them; their spools are still nobody's."""
    from exr_inspector.crawl import pool as pool_mod

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(f"/proc/{child.pid}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[0] == b"Z":
                    break
            time.sleep(0.01)
        assert not pool_mod.process_alive(child.pid)
        assert pool_mod.process_alive(os.getpid())
    finally:
        child.wait()
    assert not pool_mod.process_alive(child.pid)
