"""Nightly re-crawls on both backends: incremental parsing, missing files, renames, resume after
SIGKILL, sharding, and the faults a facility tree throws (vanished, unreadable, deep, full disk)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pytest

from exr_inspector.catalog.base import open_catalog
from exr_inspector.crawl.pipeline import crawl
from exr_inspector.crawl.walk import Walker, parse_shard, shard_of

from conftest import VAST_ACCESS as ACCESS
from conftest import VAST_BUCKET as BUCKET
from conftest import VAST_SECRET as SECRET

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from gen_tree import generate  # noqa: E402


@dataclass
class Backend:
    """One catalog on one backend, usable in-process and through the CLI."""

    name: str
    url: str
    env: dict
    args: list[str]
    options: dict

    def open(self, **kw):
        return open_catalog(self.url, **self.options, **kw)

    def cli(self, *argv: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "exr_inspector.cli", *argv, "--catalog", self.url, *self.args],
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def crawl_json(self, *argv: str) -> dict:
        return json.loads(self.cli("crawl", *argv, "--json").stdout)

    def files(self) -> dict[str, dict]:
        with self.open() as cat:
            return {r["file_path_normalized"]: r for r in cat.scan("files").to_pylist()}


@pytest.fixture(params=["duckdb", "vast"])
def backend(request, tmp_path) -> Backend:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAST_DB_", "S3_", "EXR_INSPECTOR_FAULT"))}
    if request.param == "duckdb":
        return Backend("duckdb", str(tmp_path / "catalog.duckdb"), env, [], {})
    srv = request.getfixturevalue("vast_server")
    env.update(VAST_DB_ENDPOINT=srv.endpoint, VAST_DB_ACCESS_KEY=ACCESS, VAST_DB_SECRET_KEY=SECRET)
    options = dict(endpoint=srv.endpoint, access_key=ACCESS, secret_key=SECRET, allow_insecure=True, timeout=10)
    return Backend("vast", f"vast://{BUCKET}/t_{uuid.uuid4().hex[:12]}", env, ["--allow-insecure"], options)


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "tree"
    generate(root, 60, templates=6, seed=5)
    return root


def exr_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.exr"))


def rewrite_attribute(path: Path) -> None:
    """Change the header (owner -> ownr2 in every part), keep the size; mtime moves on."""
    data = path.read_bytes()
    assert b"owner\x00string\x00" in data
    path.write_bytes(data.replace(b"owner\x00string\x00", b"ownr2\x00string\x00"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_recrawl_reflects_exactly_the_changes(backend, tree):
    first = backend.crawl_json(str(tree))
    assert (first["inserted"], first["walked"], first["skipped"]) == (60, 60, 0)
    files = exr_files(tree)
    modified, deleted, renamed = files[0:4], files[10:13], files[20:23]
    for p in modified:
        rewrite_attribute(p)
    kept = (deleted[0].read_bytes(), deleted[0].stat())
    for p in deleted:
        p.unlink()
    moved = []
    for i, p in enumerate(renamed):  # one within its directory, the others into a new one
        dest = p.with_name("renamed_" + p.name) if i == 0 else tree / "moved" / p.name
        dest.parent.mkdir(exist_ok=True)
        os.rename(p, dest)
        moved.append(dest)
    added = []
    for i, p in enumerate(files[30:35]):
        dest = tree / "added" / f"new_{i}.{p.name}"
        dest.parent.mkdir(exist_ok=True)
        shutil.copy2(p, dest)  # copy2 keeps mtime, but the inode is new: not a rename
        added.append(dest)

    s = backend.crawl_json(str(tree))
    assert s["replaced"] == 4
    assert s["inserted"] == 5 + 3  # added, plus renamed files seen under their new paths
    assert s["renamed"] == 3 and s["missing"] == 3
    assert s["skipped"] == 60 - 4 - 3 - 3 and s["files"] == 4 + 5 + 3
    rows = backend.files()
    assert len(rows) == 60 + 5  # deleted files are kept (marked); renamed ones are moved, not doubled
    for p in deleted:
        assert rows[str(p)]["missing_since"] is not None
    for old, new in zip(renamed, moved, strict=True):
        assert str(old) not in rows and rows[str(new)]["renamed_from"] == str(old)
    for p in modified + added:
        assert rows[str(p)]["missing_since"] is None
    with backend.open() as cat:
        owners = cat.scan("attributes", ["file_path", "attr_name"], where={"file_path": [str(p) for p in modified]})
        names = set(owners["attr_name"].to_pylist())
        assert "ownr2" in names and "owner" not in names
        # every child row belongs to a current file: none left behind by renames or replacements
        ids = set(cat.scan("files", ["file_id"])["file_id"].to_pylist())
        for t in ("parts", "channels", "attributes"):
            assert set(cat.scan(t, ["file_id"])["file_id"].to_pylist()) <= ids

    # Nothing changed since: a no-op, nothing opened, nothing written but the run row.
    again = backend.crawl_json(str(tree))
    assert (again["files"], again["skipped"], again["missing"], again["renamed"]) == (0, 62, 0, 0)
    assert backend.files() == rows

    # A deleted file comes back unchanged (same bytes and mtime): missing_since is cleared.
    deleted[0].write_bytes(kept[0])
    os.utime(deleted[0], ns=(kept[1].st_atime_ns, kept[1].st_mtime_ns))
    back = backend.crawl_json(str(tree))
    assert back["returned"] == 1 and back["files"] == 0
    assert backend.files()[str(deleted[0])]["missing_since"] is None

    # prune removes what is still missing, in one go
    r = backend.cli("prune", "--missing-for", "0", "--json")
    assert json.loads(r.stdout)["pruned"] == 2
    rows = backend.files()
    assert len(rows) == 60 - 2 + 5 and all(r["missing_since"] is None for r in rows.values())


def test_touch_and_full(backend, tree):
    backend.crawl_json(str(tree))
    before = backend.files()
    s = backend.crawl_json(str(tree), "--touch")
    assert (s["touched"], s["files"]) == (60, 0)
    after = backend.files()
    assert all(after[p]["inspection_count"] == 2 and after[p]["last_inspected"] > before[p]["last_inspected"]
               for p in before)
    full = backend.crawl_json(str(tree), "--full")
    assert (full["files"], full["unchanged"], full["skipped"]) == (60, 60, 0)


def test_sigkill_mid_crawl_then_resume(backend, tree):
    env = dict(backend.env, EXR_INSPECTOR_FAULT_KILL_AFTER_BATCHES="2")
    r = subprocess.run([sys.executable, "-m", "exr_inspector.cli", "crawl", str(tree), "--catalog", backend.url,
                        *backend.args, "--batch-files", "10", "--workers", "2", "--json"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL
    rows = backend.files()
    assert len(rows) in range(20, 60) and len(rows) % 10 == 0  # whole batches only
    committed = set(rows)
    s = backend.crawl_json(str(tree), "--batch-files", "10")
    assert s["stale_runs"] == 1
    assert s["skipped"] == len(committed) and s["inserted"] == 60 - len(committed)  # nothing parsed twice
    with backend.open() as cat:
        paths = cat.scan("files", ["file_path_normalized"])["file_path_normalized"]
        assert len(paths) == 60 and pc.count_distinct(paths).as_py() == 60
        n_parts = cat.count("parts")
        statuses = sorted(cat.runs()["status"].to_pylist())
        killed = cat.runs("interrupted")["run_id"].to_pylist()
    assert statuses == ["completed", "interrupted"]
    full = backend.crawl_json(str(tree), "--full")
    assert full["unchanged"] == 60
    with backend.open() as cat:
        assert cat.count("parts") == n_parts
    _sweep_killed(killed)


def _sweep_killed(run_ids: list[str]) -> None:
    """Chunks a killed crawl's readers had spooled stay in /dev/shm (it could not remove them):
    the sweep, told to skip its age guard, removes every one of them, its readers being dead
    (zombies, until init reaps them)."""
    from exr_inspector.crawl import pool as pool_mod

    pool_mod.sweep_stale_spools(max_age_s=0)
    for run_id in run_ids:
        assert not list(Path(pool_mod._SHM).glob(f"exr-inspector-{run_id}-*"))


def test_sigkill_at_a_random_moment_leaves_a_consistent_catalog(backend, tmp_path):
    root = tmp_path / "big"
    generate(root, 400, templates=8, seed=9)
    p = subprocess.Popen([sys.executable, "-m", "exr_inspector.cli", "crawl", str(root), "--catalog", backend.url,
                          *backend.args, "--batch-files", "25"], env=backend.env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5 if backend.name == "duckdb" else 3.0)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    for proc in _orphans(str(root)):  # reader processes die with their parent's pipe; make sure
        os.kill(proc, signal.SIGKILL)
    s = backend.crawl_json(str(root))
    assert s["skipped"] + s["inserted"] == 400 and s["replaced"] == 0
    with backend.open() as cat:
        paths = cat.scan("files", ["file_path_normalized"])["file_path_normalized"]
        assert len(paths) == 400 and pc.count_distinct(paths).as_py() == 400
        per_file = cat.scan("parts", ["file_id"])["file_id"]
        assert pc.count_distinct(per_file).as_py() == 400
        runs = cat.runs()["run_id"].to_pylist()  # the kill may also land after the crawl's end
    _sweep_killed(runs)


def _orphans(marker: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd and int(pid) != os.getpid():
                out.append(int(pid))
    return out


def test_shards_are_disjoint_and_their_union_is_the_full_crawl(backend, tmp_path):
    n = 3
    tree = tmp_path / "shards"
    generate(tree, 60, templates=24, seed=7)  # one directory per template
    paths = {str(p) for p in exr_files(tree)}
    parts = [set(p for c in Walker([str(tree)], shard=(k, n)) for p in c) for k in range(n)]
    assert set().union(*parts) == paths and sum(len(p) for p in parts) == len(paths)
    assert all(parts)  # 60 files in 24 directories: every shard has some
    if backend.name == "vast":  # N processes at once into one catalog
        procs = [subprocess.Popen([sys.executable, "-m", "exr_inspector.cli", "crawl", str(tree), "--catalog",
                                   backend.url, *backend.args, "--shard", f"{k}/{n}", "--json"], env=backend.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(n)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
        summaries = [json.loads(o[0]) for o in outs]
    else:  # DuckDB has one writer at a time
        summaries = [backend.crawl_json(str(tree), "--shard", f"{k}/{n}") for k in range(n)]
    assert [s["inserted"] for s in summaries] == [len(p) for p in parts]
    assert set(backend.files()) == paths
    # a shard never marks another shard's files missing
    assert all(s["missing"] == 0 for s in summaries)
    again = backend.crawl_json(str(tree), "--shard", f"1/{n}")
    assert (again["skipped"], again["missing"]) == (len(parts[1]), 0)


def test_shard_option_and_hash():
    assert parse_shard("3/16") == (3, 16)
    for bad in ("16/16", "-1/4", "1", "a/b", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    assert shard_of("/shows/a/seq/shot/render/beauty/v001", 16) == shard_of("/shows/a/seq/shot/render/beauty/v001", 16)
    counts = [0] * 8
    for i in range(4000):
        counts[shard_of(f"/shows/show{i % 7}/seq{i % 13}/shot{i}", 8)] += 1
    assert min(counts) > 400  # balanced


def test_file_vanishing_between_walk_and_read(backend, tree, monkeypatch):
    victims = exr_files(tree)[5:8]
    original = Walker.chunks

    def chunks(self, stat=True):
        for chunk in original(self, stat):
            for v in victims:
                if v.exists():
                    v.unlink()
            yield chunk

    monkeypatch.setattr(Walker, "chunks", chunks)
    with backend.open() as cat:
        s = crawl([str(tree)], cat, workers=0)
        errs = cat.scan("crawl_errors")
    assert s.status == "completed" and s.inserted == 57
    assert sorted(errs["path"].to_pylist()) == sorted(map(str, victims))
    assert set(errs["error_code"].to_pylist()) == {"vanished"}


def test_unreadable_files_and_directories(backend, tmp_path):
    root = tmp_path / "perm"
    generate(root, 12, templates=2, seed=2)
    files = exr_files(root)
    os.chmod(files[0], 0o000)
    locked_dir = files[-1].parent
    os.chmod(locked_dir, 0o000)
    # Root reads everything: as root, crawl without the capabilities that bypass permissions.
    setpriv = shutil.which("setpriv")
    try:
        if os.geteuid() == 0:
            if not setpriv:
                pytest.skip("running as root without setpriv: permissions cannot be enforced")
            r = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m",
                                "exr_inspector.cli", "crawl", str(root), "--catalog", backend.url, *backend.args,
                                "--json"], env=backend.env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            s = json.loads(r.stdout)
        else:
            s = backend.crawl_json(str(root))
    finally:
        os.chmod(locked_dir, 0o755)
        os.chmod(files[0], 0o644)
    with backend.open() as cat:
        errs = {r["path"]: r for r in cat.scan("crawl_errors").to_pylist()}
    assert errs[str(files[0])]["error_code"] == "io_error"
    assert "Permission denied" in errs[str(files[0])]["message"]
    assert errs[str(locked_dir)]["error_code"] == "io_error" and "cannot list directory" in errs[str(locked_dir)]["message"]
    assert s["errors"] == 2 and s["status"] == "completed"


def test_deep_trees_and_symlink_loops(backend, tmp_path):
    root = tmp_path / "deep"
    d = root
    for i in range(200):
        d = d / f"d{i % 10}"
    d.mkdir(parents=True)
    src = tmp_path / "src"
    generate(src, 2, templates=1, seed=1)
    shutil.copy2(exr_files(src)[0], d / "deep.exr")
    (d / "loop").symlink_to(root)  # back to the top
    (root / "self").symlink_to(".")
    s = backend.crawl_json(str(root))
    assert s["inserted"] == 1 and s["errors"] == 0
    assert str(d / "deep.exr") in backend.files()
    assert backend.crawl_json(str(root), "--max-depth", "5")["walked"] == 0


def test_include_ext_exclude_and_max_depth(backend, tmp_path):
    src = tmp_path / "src"
    generate(src, 3, templates=1, seed=1)
    one = exr_files(src)[0]
    root = tmp_path / "t"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy2(one, root / "top.EXR")
    shutil.copy2(one, root / "a" / "mid.sxr")
    shutil.copy2(one, root / "a" / "b" / "low.exr")
    shutil.copy2(one, root / "a" / "skip.exr")
    s = backend.crawl_json(str(root), "--include-ext", ".exr,.SXR", "--exclude", "skip.*", "--max-depth", "1")
    assert s["inserted"] == 2 and sorted(Path(p).name for p in backend.files()) == ["mid.sxr", "top.EXR"]
    # Files outside this crawl's filters are not "missing": a narrower crawl marks nothing.
    s = backend.crawl_json(str(root), "--include-ext", ".exr", "--max-depth", "0")
    assert s["missing"] == 0


def test_disk_full_rolls_back_the_batch_and_exits_3(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        # Leave 1.5 MB: room for the schema and a few batches, not for the crawl (the catalog's
        # size changes with its layout; the free space does not).
        (mnt / "filler").write_bytes(b"\0" * (8 * 1024 * 1024 - 1536 * 1024))
        root = tmp_path / "tree"
        generate(root, 400, templates=8, seed=4)
        db = mnt / "c.duckdb"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXR_INSPECTOR_FAULT")}
        r = subprocess.run([sys.executable, "-m", "exr_inspector.cli", "crawl", str(root), "--catalog", str(db),
                            "--batch-files", "50"], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert "is full" in r.stderr and "rolled back" in r.stderr
        for f in mnt.iterdir():  # what was committed, copied off the full disk
            if f.name != "filler":
                shutil.copy(f, tmp_path / f.name)
        subprocess.run(["umount", str(mnt)], check=True)
        mounted = False
        with open_catalog(str(tmp_path / "c.duckdb")) as cat:
            n = cat.count("files")
            assert n % 50 == 0 and 0 < n < 400, n  # whole batches only, the committed ones kept
            assert cat.query("SELECT count(DISTINCT file_id) FROM parts").to_pylist()[0] == {
                "count(DISTINCT file_id)": n}
            assert cat.runs()["status"].to_pylist() in (["failed"], ["running"])
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)])


def test_one_file_system_stays_on_the_roots_mount(tmp_path):
    root = tmp_path / "fs"
    src = tmp_path / "src"
    generate(src, 2, templates=1, seed=1)
    one = exr_files(src)[0]
    (root / "mnt").mkdir(parents=True)
    shutil.copy2(one, root / "here.exr")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root / "mnt")],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a file system inside the tree")
    try:
        shutil.copy2(one, root / "mnt" / "there.exr")
        names = sorted(Path(p).name for c in Walker([str(root)], one_file_system=True) for p in c)
        assert names == ["here.exr"]
        assert sorted(Path(p).name for c in Walker([str(root)]) for p in c) == ["here.exr", "there.exr"]
    finally:
        subprocess.run(["umount", "-l", str(root / "mnt")])


def test_file_roots_follow_the_shard_split(tmp_path):
    src = tmp_path / "src"
    generate(src, 12, templates=6, seed=3)
    files = [str(p) for p in exr_files(src)]
    n = 3
    got = [[p for c in Walker(files, shard=(k, n)) for p in c] for k in range(n)]
    assert sorted(p for g in got for p in g) == sorted(files)  # each file root in exactly one shard
    assert all(Walker(files, shard=(k, n)).wanted(p) for k in range(n) for p in got[k])


def test_unwritable_catalog_exits_3(tmp_path, tree):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    cmd = [sys.executable, "-m", "exr_inspector.cli", "crawl", str(tree), "--catalog", str(ro / "c.duckdb")]
    if os.geteuid() == 0:  # root writes anywhere: drop the capabilities that bypass permissions
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(ro, 0o755)
    assert r.returncode == 3, r.stderr
    assert "cannot open catalog" in r.stderr and "Permission denied" in r.stderr
    assert not (ro / "c.duckdb").exists()


def test_windows_grow_from_one_chunk_and_lose_nothing(tmp_path):
    """The first window is one chunk (the readers start at once), then they double up to the
    window size; the chunks still cover every walked path once, in walk order."""
    import datetime as dt

    from exr_inspector.crawl.incremental import Incremental

    for i in range(70):
        d = tmp_path / "tree" / f"d{i // 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:03d}.exr").write_bytes(b"")
    walker = Walker([str(tmp_path / "tree")], chunk_size=4)
    with open_catalog(str(tmp_path / "c.duckdb")) as cat:
        plan = Incremental(cat, walker, now=dt.datetime(2026, 1, 1), chunk_size=4, window=16)
        sizes = [len(w) for w in plan._windows()]
        assert sizes == [4, 8, 16, 16, 16, 10]
        walked = [p for c in Walker([str(tmp_path / "tree")], chunk_size=4).chunks() for p in c.paths]
        chunks = list(Incremental(cat, Walker([str(tmp_path / "tree")], chunk_size=4), now=dt.datetime(2026, 1, 1),
                                  chunk_size=4, window=16).chunks())
    assert [p for c in chunks for p in c] == walked and len(walked) == 70
    assert all(len(c) == 4 for c in chunks[:-1])
