#!/usr/bin/env python3
"""Nightly re-crawls: the first crawl, a no-op re-crawl and a 1%-changed re-crawl against the
walk+stat floor, measured in ONE run on the SAME tree.

  (a) first     ``exr-inspector crawl ROOT --json`` into a fresh DuckDB catalog
  (b) no-op     the same command again: nothing changed, nothing should be opened
  (c) floor     one process: ``os.walk`` + ``os.stat`` of every file
  (d) 1%        rewrite one header attribute in 1% of the files, crawl again

Targets: no-op >= 20x faster than the first crawl, no-op within 2x of the floor, and the
1% re-crawl within 2x of the no-op. Crawl times are the crawl's own ``seconds`` (walk,
lookups, parsing, writes, missing-file pass), without the interpreter's start-up, which
the wall time also shows. The tree is generated into a temporary directory (it is
modified). Never fails on numbers; the last line is a one-line JSON summary.

    python bench/bench_recrawl.py              # 20,000 files
    python bench/bench_recrawl.py --files 2000 # quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_crawl import crawl_command, list_exr, verdict, warm  # noqa: E402

from gen_tree import generate  # noqa: E402

TARGET_NOOP_SPEEDUP = 20.0
TARGET_NOOP_VS_FLOOR = 2.0
TARGET_CHANGED_VS_NOOP = 2.0


def walk_stat_floor(root: Path) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith(".exr"):
                os.stat(os.path.join(dirpath, name))
                n += 1
    return n, time.perf_counter() - t0


def crawl(root: Path, catalog: Path, *extra: str) -> tuple[dict, float]:
    cmd = [*crawl_command(), "crawl", str(root), "--catalog", str(catalog), "--json", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1]), wall


def change(paths: list[str], fraction: float, seed: int) -> int:
    """Rewrite a header attribute (owner -> ownr2) in ``fraction`` of the files."""
    rng = random.Random(seed)
    picked = rng.sample(paths, max(1, int(len(paths) * fraction)))
    n = 0
    for p in picked:
        data = Path(p).read_bytes()
        new = data.replace(b"owner\x00string\x00", b"ownr2\x00string\x00")
        if new == data:
            new = data.replace(b"ownr2\x00string\x00", b"owner\x00string\x00")
        Path(p).write_bytes(new)
        st = os.stat(p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3, help="no-op and floor repeats (median)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="exr-recrawl-") as tmp:
        root = Path(tmp) / "tree"
        t0 = time.perf_counter()
        generate(root, args.files, templates=40, seed=args.seed)
        paths = list_exr(root)
        print(f"tree {root}: {len(paths):,} files (generated in {time.perf_counter() - t0:.1f}s), "
              f"{os.cpu_count()} CPUs")
        warm(paths)
        catalog = Path(tmp) / "catalog.duckdb"

        first, first_wall = crawl(root, catalog)
        noops = [crawl(root, catalog) for _ in range(args.repeat)]
        floors = [walk_stat_floor(root)[1] for _ in range(args.repeat)]
        noop_s = statistics.median(s["seconds"] for s, _ in noops)
        noop_wall = statistics.median(w for _, w in noops)
        floor_s = statistics.median(floors)
        changed_n = change(paths, 0.01, args.seed)
        changed, changed_wall = crawl(root, catalog)

    n = len(paths)
    print(f"\n{'measure':<44}{'files':>8}{'seconds':>10}{'files/s':>11}  wall s")
    for label, secs, wall in (("first crawl", first["seconds"], first_wall),
                              ("no-op re-crawl (median)", noop_s, noop_wall),
                              (f"re-crawl after changing {changed_n:,} files (1%)", changed["seconds"], changed_wall)):
        print(f"{label:<44}{n:>8,}{secs:>10.3f}{n / secs:>11,.0f}  {wall:.2f}")
    print(f"{'floor: os.walk + stat, one process':<44}{n:>8,}{floor_s:>10.3f}{n / floor_s:>11,.0f}")
    noop_ok = all(s["files"] == 0 and s["skipped"] == n for s, _ in noops)
    print(f"  no-op runs opened {sum(s['files'] for s, _ in noops)} files; the 1% run parsed {changed['files']} "
          f"({changed['replaced']} changed)")

    speedup = first["seconds"] / noop_s
    vs_floor = noop_s / floor_s
    changed_vs = changed["seconds"] / noop_s
    print("\n== ratios (one run, same tree) ==")
    print(f"  first / no-op            {speedup:6.1f}x   target >= {TARGET_NOOP_SPEEDUP:.0f}x   "
          f"{verdict(speedup >= TARGET_NOOP_SPEEDUP)}")
    print(f"  no-op / floor            {vs_floor:6.2f}x   target <= {TARGET_NOOP_VS_FLOOR:.0f}x    "
          f"{verdict(vs_floor <= TARGET_NOOP_VS_FLOOR)}")
    print(f"  1% changed / no-op       {changed_vs:6.2f}x   target <= {TARGET_CHANGED_VS_NOOP:.0f}x    "
          f"{verdict(changed_vs <= TARGET_CHANGED_VS_NOOP)}")
    print(json.dumps({"files": n, "first_s": round(first["seconds"], 3), "noop_s": round(noop_s, 3),
                      "floor_s": round(floor_s, 3), "changed_s": round(changed["seconds"], 3),
                      "first_over_noop": round(speedup, 1), "noop_over_floor": round(vs_floor, 2),
                      "changed_over_noop": round(changed_vs, 2), "noop_opened_nothing": noop_ok,
                      "noop_wall_s": round(noop_wall, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
