#!/usr/bin/env python3
"""The crawl against its baseline and its floor: ratios measured in ONE run on the SAME tree.

Generates (once, cached) a tree of small realistic EXR image sequences, warms the
page cache, then measures on that tree:

  (a) crawl     the real ``exr-inspector crawl --json`` CLI in a subprocess, into a fresh
                DuckDB catalog: wall time and the peak RSS of its whole process tree
                (the writer plus its reader workers);
  (b) baseline  bench/baseline.py, the straightforward per-file pipeline (OpenEXR header
                read, dict payload, Python embedding, one DuckDB transaction per file), on
                a 1,000-file subset;
  (c) floor     one process: ``os.walk`` + ``open`` + ``read(65536)`` of every file.

and prints files/s and the ratios the project targets: crawl/baseline >= 100x,
crawl/floor >= 1/3, peak RSS < 500 MB (and flat as the tree grows, ``--rss-scale``).
``--cold`` also evicts the tree's pages before each timed run and compares the crawl
with a single-threaded cold open+read floor (target >= 1.5x). Absolute times on a
shared 2-core machine are noise; read the ratios. Never fails on numbers: exit 0
unless something crashes. The last line printed is a one-line JSON summary.

    python bench/bench_crawl.py                  # 20,000 files (+ a 100,000-file RSS run)
    python bench/bench_crawl.py --quick          # CI smoke: 2,000 files, no RSS scale
    python bench/bench_crawl.py --cold --rss-scale 0
    python bench/bench_crawl.py --tree DIR --workers 4 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from baseline import READER, run_baseline  # noqa: E402

from gen_tree import generate  # noqa: E402

TEMPLATES = 40
STAMP = ".bench-tree-complete"
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20

TARGET_VS_BASELINE = 100.0
TARGET_VS_FLOOR = 1 / 3
TARGET_RSS_MB = 500.0
TARGET_COLD = 1.5
FLAT_RSS = 1.25  # peak RSS at the large tree / at the default tree, at most


# --------------------------------------------------------------------------- the tree
def cache_root() -> Path:
    return Path(os.environ.get("EXR_BENCH_CACHE", Path(tempfile.gettempdir()) / "exr-inspector-bench"))


def ensure_tree(files: int, seed: int, tree: Path | None = None) -> tuple[Path, float]:
    """The tree of ``files`` EXRs (40 templates, image sequences), generated once; returns (dir, gen seconds).

    ``tree`` given: used as is if it already holds EXR files, otherwise generated there.
    """
    if tree is not None:
        if tree.is_dir() and (any(tree.rglob("*.exr"))):
            return tree, 0.0
        out = tree
    else:
        out = cache_root() / f"tree-{files}-s{seed}-t{TEMPLATES}"
        stamp = out / STAMP
        if stamp.exists():
            return out, 0.0
        if out.exists():  # an interrupted generation: start over
            shutil.rmtree(out)
    print(f"generating {files:,} files ({TEMPLATES} templates, seed {seed}) in {out} ...", flush=True)
    t0 = time.perf_counter()
    generate(out, files, templates=TEMPLATES, seed=seed, quiet=False)
    secs = time.perf_counter() - t0
    if tree is None:
        (out / STAMP).write_text(json.dumps({"files": files, "seed": seed, "templates": TEMPLATES}) + "\n")
    return out, secs


def list_exr(root: Path) -> list[str]:
    out = []
    for dirpath, _dirs, names in os.walk(root):
        out.extend(os.path.join(dirpath, n) for n in names if n.endswith(".exr"))
    out.sort()
    return out


def spread(paths: Sequence[str], n: int) -> list[str]:
    """``n`` paths spread evenly over the sorted list (every template, not one sequence)."""
    if len(paths) <= n:
        return list(paths)
    step = len(paths) / n
    return [paths[int(i * step)] for i in range(n)]


# --------------------------------------------------------------------------- page cache
def warm(paths: Sequence[str]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def evict(paths: Sequence[str]) -> None:
    """Drop the files' pages: fadvise(DONTNEED) on each. Directory entries and inodes stay cached."""
    os.sync()  # dirty pages cannot be dropped
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class _Residency:
    """Fraction of a file's pages in the page cache, via mmap + mincore (Linux); None if unavailable."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_long]
            libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
            self.libc = libc
        except (OSError, AttributeError):
            self.libc = None

    def __call__(self, paths: Sequence[str]) -> float | None:
        if self.libc is None:
            return None
        import mmap

        resident = total = 0
        for p in paths:
            size = os.path.getsize(p)
            if size == 0:
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                addr = self.libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
                if addr in (None, ctypes.c_void_p(-1).value):
                    return None
                try:
                    n = (size + PAGE - 1) // PAGE
                    vec = (ctypes.c_ubyte * n)()
                    if self.libc.mincore(addr, size, vec) != 0:
                        return None
                    resident += sum(b & 1 for b in vec)
                    total += n
                finally:
                    self.libc.munmap(addr, size)
            finally:
                os.close(fd)
        return resident / total if total else None


def read_us(paths: Sequence[str]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            f.read(65536)
    return (time.perf_counter() - t0) / len(paths) * 1e6


def eviction_check(paths: Sequence[str]) -> dict:
    """Does fadvise(DONTNEED) really evict here? Residency and read time of a sample, warm vs evicted."""
    sample = spread(paths, 300)
    resident = _Residency()
    warm(sample)
    warm_res, warm_us = resident(sample), read_us(sample)
    evict(sample)
    cold_res = resident(sample)
    cold_us = read_us(sample)
    slowdown = cold_us / warm_us if warm_us > 0 else float("inf")
    effective = (cold_res is not None and cold_res < 0.05) or (cold_res is None and slowdown > 2.0)
    if cold_res is not None and cold_res < 0.05 and slowdown < 2.0:
        verdict = ("pages are evicted from this kernel's cache, but reads stay fast: the storage below "
                   "(e.g. the hypervisor's cache) still serves them, so 'cold' is only guest-cold")
    elif effective:
        verdict = "eviction works: evicted reads are slower and the pages are gone"
    else:
        verdict = "eviction did NOT take: the 'cold' numbers below are really warm"
    return {"sample": len(sample), "resident_warm": warm_res, "resident_evicted": cold_res,
            "read_us_warm": warm_us, "read_us_evicted": cold_us, "slowdown": slowdown,
            "effective": effective, "verdict": verdict}


# --------------------------------------------------------------------------- the floor
def floor(root: Path) -> tuple[int, float]:
    """One process: os.walk + open + read(64 KiB) of every .exr file. Returns (files, seconds)."""
    n = 0
    t0 = time.perf_counter()
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith(".exr"):
                with open(os.path.join(dirpath, name), "rb") as f:
                    f.read(65536)
                n += 1
    return n, time.perf_counter() - t0


# --------------------------------------------------------------------------- the crawl, in a subprocess
def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return kids


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


class TreeMemory(threading.Thread):
    """Polls a process tree: peak of the summed RSS (shared pages counted once per process,
    an upper bound) and of the summed PSS (shared pages split: the real total)."""

    def __init__(self, pid: int, interval: float = 0.02, pss_every: int = 5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.pss_every = pid, interval, pss_every
        self.peak_rss = self.peak_pss = self.peak_procs = self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        i = 0
        while not self._stop_event.is_set():
            pids = _tree(self.pid)
            rss = pss = 0
            for p in pids:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    rss += _rss(p)
                    if i % self.pss_every == 0:
                        pss += _pss(p)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            self.samples += 1
            i += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def crawl_command() -> list[str]:
    exe = shutil.which("exr-inspector", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "exr_inspector.cli"]


@dataclass
class CrawlRun:
    files: int = 0
    errors: int = 0
    wall_s: float = 0.0
    inner_s: float = 0.0  # the crawl's own summary.seconds (no interpreter start-up, imports, pool start)
    peak_rss_sum_mb: float = 0.0
    peak_pss_sum_mb: float = 0.0
    max_proc_rss_mb: float = 0.0  # wait4(): the largest single process of the tree
    processes: int = 0
    catalog_mb: float = 0.0
    summary: dict = field(default_factory=dict)

    @property
    def files_per_s(self) -> float:
        return (self.files + self.errors) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def inner_files_per_s(self) -> float:
        return (self.files + self.errors) / self.inner_s if self.inner_s > 0 else 0.0


def run_crawl(root: Path, workers: int, workdir: Path) -> CrawlRun:
    """``exr-inspector crawl ROOT --catalog <fresh> --workers N --json`` with its process tree's memory watched."""
    catalog = workdir / f"crawl-{time.monotonic_ns()}.duckdb"
    cmd = [*crawl_command(), "crawl", str(root), "--catalog", str(catalog), "--workers", str(workers), "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        mem = TreeMemory(proc.pid)
        mem.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            wall = time.perf_counter() - t0
            mem.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr.decode(errors='replace')}")
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    run = CrawlRun(
        files=summary["files"], errors=summary["errors"], wall_s=wall, inner_s=summary["seconds"],
        peak_rss_sum_mb=mem.peak_rss / MB, peak_pss_sum_mb=mem.peak_pss / MB,
        max_proc_rss_mb=usage.ru_maxrss / 1024, processes=mem.peak_procs,
        catalog_mb=sum(p.stat().st_size for p in workdir.glob(catalog.name + "*")) / MB, summary=summary,
    )
    for p in workdir.glob(catalog.name + "*"):
        p.unlink()
    return run


# --------------------------------------------------------------------------- in-process profile
def profile_crawl(root: Path, workdir: Path, top: int = 25) -> None:
    """cProfile of an in-process crawl (workers=0): where the per-file time goes."""
    import cProfile
    import pstats

    from exr_inspector.catalog.base import open_catalog
    from exr_inspector.crawl.pipeline import crawl

    db = workdir / "profile.duckdb"
    prof = cProfile.Profile()
    with open_catalog(str(db)) as cat:
        prof.enable()
        s = crawl([str(root)], cat, workers=0)
        prof.disable()
    print(f"\n== cProfile, in-process crawl (workers=0): {s.files:,} files in {s.seconds:.2f}s "
          f"= {s.files_per_s:,.0f} files/s (profiler overhead included) ==")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


# --------------------------------------------------------------------------- report
def fmt_rate(x: float) -> str:
    return f"{x:>12,.0f}"


def fmt_fraction(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def median_run(runs: list[CrawlRun]) -> CrawlRun:
    return sorted(runs, key=lambda r: r.wall_s)[len(runs) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--files", type=int, default=20_000, help="files in the tree (default 20,000)")
    ap.add_argument("--tree", type=Path, default=None, help="use (or generate into) this tree instead of the cache")
    ap.add_argument("--workers", type=int, default=None, help="crawl --workers (default: CPU count)")
    ap.add_argument("--quick", action="store_true", help="CI smoke: 2,000 files, 1 repeat, no RSS scale")
    ap.add_argument("--cold", action="store_true", help="also time with the tree's pages evicted")
    ap.add_argument("--rss-scale", type=int, default=100_000,
                    help="also crawl a tree of N files and compare peak RSS (default 100,000; 0: skip)")
    ap.add_argument("--baseline-files", type=int, default=1000, help="baseline subset size (default 1,000)")
    ap.add_argument("--repeat", type=int, default=None, help="timed repeats of crawl and floor (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="also cProfile an in-process crawl of the tree")
    args = ap.parse_args(argv)
    if args.quick:
        args.files, args.rss_scale = 2_000, 0
    repeat = args.repeat or (1 if args.quick else 3)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)

    root, gen_s = ensure_tree(args.files, args.seed, args.tree)
    paths = list_exr(root)
    n = len(paths)
    print(f"tree {root}: {n:,} EXR files, {sum(os.path.getsize(p) for p in paths) / MB:.0f} MB"
          + (f" (generated in {gen_s:.0f}s)" if gen_s else " (cached)"))
    print(f"{os.cpu_count()} CPUs, crawl --workers {workers}, {repeat} repeat(s), baseline reader {READER}")

    result: dict = {"files": n, "workers": workers, "cpus": os.cpu_count(), "repeat": repeat}
    with tempfile.TemporaryDirectory(prefix="exr-bench-crawl-") as tmp:
        workdir = Path(tmp)
        empty = workdir / "empty"
        empty.mkdir()

        # ---- warm: every file read once, then the timed runs interleaved so drift hits each alike
        warm(paths)
        floor(root)
        startup = run_crawl(empty, workers, workdir)  # interpreter, imports, pool start, catalog create
        floors: list[float] = []
        crawls: list[CrawlRun] = []
        for _ in range(repeat):
            fn, fs = floor(root)
            floors.append(fs)
            crawls.append(run_crawl(root, workers, workdir))
        c = median_run(crawls)
        floor_s = statistics.median(floors)
        floor_rate = fn / floor_s
        if c.files + c.errors != n:
            print(f"WARNING: the crawl saw {c.files + c.errors:,} files, the tree has {n:,}", file=sys.stderr)

        # ---- baseline on a subset spread over the tree
        subset = spread(paths, args.baseline_files)
        base = run_baseline(subset, str(workdir / "baseline.duckdb"))
        base_rate = base.files_per_s

        vs_base = c.files_per_s / base_rate if base_rate else float("inf")
        vs_floor = c.files_per_s / floor_rate
        inner_vs_floor = c.inner_files_per_s / floor_rate
        peak_rss = max(r.peak_rss_sum_mb for r in crawls)
        peak_pss = max(r.peak_pss_sum_mb for r in crawls)
        max_proc = max(r.max_proc_rss_mb for r in crawls)
        net_s = c.wall_s - startup.wall_s
        net_rate = n / net_s if net_s > 0 else 0.0

        print("\n== warm page cache ==")
        print(f"{'measure':<52}{'files':>9}{'seconds':>10}{'files/s':>12}")
        rows = [
            ("floor: 1 process, os.walk+open+read(64 KiB)", fn, floor_s, floor_rate),
            (f"crawl: CLI wall, --workers {workers}", n, c.wall_s, c.files_per_s),
            ("  crawl minus fixed start-up (empty-tree crawl)", n, net_s, net_rate),
            ("  crawl: its own summary.seconds", n, c.inner_s, c.inner_files_per_s),
            (f"baseline: per-file, {len(subset):,}-file subset", len(subset), base.seconds, base_rate),
        ]
        for label, k, s, r in rows:
            print(f"{label:<52}{k:>9,}{s:>10.2f}{fmt_rate(r)}")
        print(f"  (empty-tree crawl, the fixed cost of every run: {startup.wall_s:.2f}s wall, "
              f"peak RSS {startup.peak_rss_sum_mb:.0f} MB)")
        print("  baseline ms/file: " + ", ".join(f"{k} {v:.2f}" for k, v in base.to_dict()["ms_per_file"].items()))
        print("\n== ratios (one run, same tree) ==")
        inner_vs_base = c.inner_files_per_s / base_rate if base_rate else 0.0
        print(f"  crawl / baseline   {vs_base:>8.0f}x     target >= {TARGET_VS_BASELINE:.0f}x    "
              f"{verdict(vs_base >= TARGET_VS_BASELINE)}   (summary.seconds basis: {inner_vs_base:.0f}x; the "
              "baseline's rate excludes its start-up too)")
        print(f"  crawl / floor      {vs_floor:>8.2f}      target >= {TARGET_VS_FLOOR:.2f}    "
              f"{verdict(vs_floor >= TARGET_VS_FLOOR)}   (summary.seconds basis: {inner_vs_floor:.2f})")
        print(f"  peak RSS (sum)     {peak_rss:>8.0f} MB   target < {TARGET_RSS_MB:.0f} MB  "
              f"{verdict(peak_rss < TARGET_RSS_MB)}   (PSS sum {peak_pss:.0f} MB, largest process "
              f"{max_proc:.0f} MB, {c.processes} processes; max over repeats)")
        print(f"  catalog on disk    {c.catalog_mb:>8.1f} MB for {n:,} files")
        if repeat > 1:
            print("  crawl wall per repeat: " + ", ".join(f"{r.wall_s:.2f}s" for r in crawls)
                  + "; floor: " + ", ".join(f"{s:.3f}s" for s in floors))
        result.update({
            "floor_fps": round(floor_rate), "crawl_fps": round(c.files_per_s), "crawl_net_fps": round(net_rate),
            "crawl_inner_fps": round(c.inner_files_per_s), "startup_s": round(startup.wall_s, 2),
            "baseline_fps": round(base_rate, 1), "baseline_files": len(subset),
            "crawl_vs_baseline": round(vs_base, 1), "crawl_inner_vs_baseline": round(inner_vs_base, 1),
            "crawl_vs_floor": round(vs_floor, 3),
            "crawl_inner_vs_floor": round(inner_vs_floor, 3),
            "peak_rss_mb": round(peak_rss), "peak_pss_mb": round(peak_pss),
            "max_proc_rss_mb": round(max_proc), "catalog_mb": round(c.catalog_mb, 1),
        })

        # ---- cold
        if args.cold:
            check = eviction_check(paths)
            print("\n== cold: pages evicted with posix_fadvise(DONTNEED) before each timed run ==")
            print(f"  sanity ({check['sample']} files): resident warm {fmt_fraction(check['resident_warm'])} -> "
                  f"evicted {fmt_fraction(check['resident_evicted'])}; read {check['read_us_warm']:.1f} -> "
                  f"{check['read_us_evicted']:.1f} us/file ({check['slowdown']:.1f}x)")
            print(f"  {check['verdict']}. Directory entries and inodes stay cached (only root can drop them).")
            cold_floors: list[float] = []
            cold_crawls: list[CrawlRun] = []
            for _ in range(repeat):
                evict(paths)
                cfn, cfs = floor(root)
                cold_floors.append(cfs)
                evict(paths)
                cold_crawls.append(run_crawl(root, workers, workdir))
            cc = median_run(cold_crawls)
            cold_floor_rate = cfn / statistics.median(cold_floors)
            cold_vs = cc.files_per_s / cold_floor_rate
            cold_net = n / (cc.wall_s - startup.wall_s) if cc.wall_s > startup.wall_s else 0.0
            print(f"{'measure':<52}{'files':>9}{'seconds':>10}{'files/s':>12}")
            print(f"{'cold floor: 1 thread, os.walk+open+read(64 KiB)':<52}{cfn:>9,}"
                  f"{statistics.median(cold_floors):>10.2f}{fmt_rate(cold_floor_rate)}")
            print(f"{f'cold crawl: CLI wall, --workers {workers}':<52}{n:>9,}{cc.wall_s:>10.2f}{fmt_rate(cc.files_per_s)}")
            print(f"{'  cold crawl minus fixed start-up':<52}{n:>9,}{cc.wall_s - startup.wall_s:>10.2f}"
                  f"{fmt_rate(cold_net)}")
            print(f"  cold crawl / cold floor  {cold_vs:>6.2f}     target >= {TARGET_COLD}    "
                  f"{verdict(cold_vs >= TARGET_COLD)}   (summary.seconds basis: "
                  f"{cc.inner_files_per_s / cold_floor_rate:.2f})")
            result.update({
                "cold_floor_fps": round(cold_floor_rate), "cold_crawl_fps": round(cc.files_per_s),
                "cold_crawl_inner_fps": round(cc.inner_files_per_s), "cold_crawl_vs_floor": round(cold_vs, 3),
                "cold_eviction_effective": check["effective"], "cold_read_slowdown": round(check["slowdown"], 1),
                "cold_resident_after_evict": check["resident_evicted"],
            })
            warm(paths)

        if args.profile:
            profile_crawl(root, workdir)

        # ---- RSS at scale
        if args.rss_scale and args.rss_scale != n:
            big_root, _ = ensure_tree(args.rss_scale, args.seed)
            big_paths = list_exr(big_root)
            warm(big_paths)
            big = run_crawl(big_root, workers, workdir)
            growth = big.peak_rss_sum_mb / peak_rss if peak_rss else float("inf")
            print(f"\n== peak RSS as the tree grows (warm; target flat, <= {FLAT_RSS}x) ==")
            print(f"{'files':>9}{'peak RSS sum':>14}{'peak PSS sum':>14}{'largest proc':>14}{'crawl files/s':>15}")
            for k, rss, pss, proc, rate in (
                (n, peak_rss, peak_pss, max_proc, c.files_per_s),
                (len(big_paths), big.peak_rss_sum_mb, big.peak_pss_sum_mb, big.max_proc_rss_mb, big.files_per_s),
            ):
                print(f"{k:>9,}{rss:>11.0f} MB{pss:>11.0f} MB{proc:>11.0f} MB{fmt_rate(rate):>15}")
            print(f"  growth {growth:.2f}x (flat: {verdict(growth <= FLAT_RSS)}); peak at {len(big_paths):,} files "
                  f"{big.peak_rss_sum_mb:.0f} MB (< {TARGET_RSS_MB:.0f} MB: {verdict(big.peak_rss_sum_mb < TARGET_RSS_MB)})")
            # Both CLI runs pay the same start-up, commit and checkpoint: the difference is what
            # the extra files cost, the rate a long crawl settles at.
            extra, extra_s = len(big_paths) - n, big.wall_s - c.wall_s
            marginal = extra / extra_s if extra > 0 and extra_s > 0 else 0.0
            print(f"  marginal rate, ({len(big_paths):,} - {n:,} files) / (difference of CLI wall): "
                  f"{marginal:,.0f} files/s = {marginal / floor_rate:.2f} of the floor, "
                  f"{marginal / base_rate if base_rate else 0:.0f}x the baseline (fixed costs cancel)")
            result.update({
                "rss_scale_files": len(big_paths), "rss_scale_peak_rss_mb": round(big.peak_rss_sum_mb),
                "rss_scale_peak_pss_mb": round(big.peak_pss_sum_mb),
                "rss_scale_max_proc_rss_mb": round(big.max_proc_rss_mb), "rss_scale_crawl_fps": round(big.files_per_s),
                "rss_growth": round(growth, 2), "marginal_fps": round(marginal),
                "marginal_vs_floor": round(marginal / floor_rate, 3),
            })
            del big_paths

    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
