#!/usr/bin/env python3
"""The VAST backend through the real ``vastdb`` SDK, against the loopback server in tests/vastloop.

Parses N real generated renders once (in-process), then upserts them in batches into a fresh
VAST schema and reads the server's request log:

  - rows/s and files/s into the backend (one writer, then ``--writers`` concurrent writers);
  - requests per 10,000 files, by kind, and bytes per request (largest, mean);
  - insert requests per table against the minimum the data needs (its insert bytes / 4.5 MiB);
  - transactions per batch; and the same for a re-crawl of unchanged files (lookups + audit updates).

Targets: every request <= 5 MiB; insert requests per table <= 1.2x the minimum; one
transaction per batch. The loopback server is Python on the same 2 cores, so absolute rates
say little about a cluster; the request shape is what carries over. Never fails on numbers.

    python bench/bench_vast.py                 # 10,000 files, batches of 2,000
    python bench/bench_vast.py --files 2000    # quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_crawl import ensure_tree, list_exr, spread, verdict  # noqa: E402
from exr_inspector.catalog.base import IngestBatch  # noqa: E402
from exr_inspector.catalog.vast import INSERT_SLICE, MAX_REQUEST, VastCatalog  # noqa: E402
from exr_inspector.crawl.batch import build_batch  # noqa: E402
from exr_inspector.crawl.columns import scan_chunk  # noqa: E402
from vastloop.server import LoopbackVast  # noqa: E402

ACCESS, SECRET, BUCKET = "AKIABENCHVAST", "bench-secret-key-0123456789", "exr-data"


def batches_of(paths: list[str], size: int) -> list[IngestBatch]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return [build_batch(scan_chunk(paths[i:i + size]), now, "bench") for i in range(0, len(paths), size)]


def table_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def run(srv: LoopbackVast, batches: list[IngestBatch], writers: int, schema: str) -> tuple[float, list]:
    """Upsert every batch (``writers`` threads, a Session each); returns (seconds, request log)."""
    opts = dict(endpoint=srv.endpoint, access_key=ACCESS, secret_key=SECRET, allow_insecure=True, timeout=120)
    cats = [VastCatalog(f"vast://{BUCKET}/{schema}", **opts) for _ in range(writers)]
    srv.clear_requests()
    todo = list(batches)
    lock = threading.Lock()

    def work(cat: VastCatalog) -> None:
        while True:
            with lock:
                if not todo:
                    return
                b = todo.pop(0)
            cat.upsert(b)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(c,)) for c in cats]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    for c in cats:
        c.close()
    return secs, srv.requests


def report(label: str, files: int, rows: int, secs: float, reqs: list, batches: int, first: bool) -> dict:
    per10k = 10_000 / files
    kinds = Counter(f"{r.method} {r.command}" for r in reqs)
    begins = kinds.get("POST transaction", 0)
    sizes = [r.body_bytes for r in reqs]
    print(f"\n== {label} ==")
    print(f"  {files:,} files, {rows:,} rows in {secs:.2f} s: {files / secs:,.0f} files/s, {rows / secs:,.0f} rows/s")
    print(f"  requests: {len(reqs):,} ({len(reqs) * per10k:,.0f} per 10,000 files); by kind per 10,000 files:")
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"    {k:<24}{v * per10k:>9,.0f}")
    print(f"  bytes per request: largest {max(sizes) / 2**20:.2f} MiB, mean {sum(sizes) / len(sizes) / 1024:.1f} KiB "
          f"(cap {MAX_REQUEST / 2**20:.0f} MiB)  {verdict(max(sizes) <= MAX_REQUEST)}")
    print(f"  transactions: {begins} for {batches} batches  {verdict(begins == batches)}")
    out = {"files_per_s": round(files / secs), "rows_per_s": round(rows / secs),
           "requests_per_10k_files": round(len(reqs) * per10k), "max_request_mib": round(max(sizes) / 2**20, 2),
           "transactions": begins, "batches": batches}
    if first:
        inserts: dict[str, list[int]] = {}
        for r in reqs:
            if r.method == "POST" and r.command == "rows":
                inserts.setdefault(table_of(r.path), []).append(r.body_bytes)
        print("  insert requests per table vs the minimum (insert bytes / 4.5 MiB, per batch):")
        worst = 0.0
        for t, s in sorted(inserts.items()):
            minimum = batches * max(1, math.ceil(sum(s) / batches / INSERT_SLICE))
            ratio = len(s) / minimum
            worst = max(worst, ratio)
            print(f"    {t:<14}{len(s):>5} requests, {sum(s) / 2**20:8.1f} MiB, minimum {minimum:>4}: {ratio:.2f}x")
        print(f"  worst {worst:.2f}x, target <= 1.2x  {verdict(worst <= 1.2)}")
        out["insert_requests_vs_min"] = round(worst, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=2_000, help="files per upsert transaction")
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args(argv)

    tree, _ = ensure_tree(20_000, 0)
    paths = spread(list_exr(tree), args.files)
    t0 = time.perf_counter()
    batches = batches_of(paths, args.batch)
    rows = sum(sum(t.num_rows for t in b.tables().values()) for b in batches)
    print(f"{len(paths):,} files from {tree} parsed in {time.perf_counter() - t0:.1f} s: {rows:,} rows "
          f"in {len(batches)} batches of {args.batch:,}; {os.cpu_count()} CPUs, loopback server in-process")
    result = {"files": len(paths), "batch": args.batch}
    with LoopbackVast(buckets=[BUCKET], access_key=ACCESS, secret_key=SECRET) as srv:
        secs, reqs = run(srv, batches, 1, "one_writer")
        result["first_1_writer"] = report("first crawl, 1 writer", len(paths), rows, secs, reqs, len(batches), True)
        secs, reqs = run(srv, batches, 1, "one_writer")
        result["recrawl_unchanged"] = report("same files again (unchanged: lookups + audit updates)", len(paths),
                                             rows, secs, reqs, len(batches), False)
        secs, reqs = run(srv, batches, args.writers, "many_writers")
        result[f"first_{args.writers}_writers"] = report(f"first crawl, {args.writers} writers", len(paths), rows,
                                                         secs, reqs, len(batches), True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
