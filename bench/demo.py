"""`make demo`: the product on a generated tree of renders.

Runs the real CLI (the console script in the venv) the way a user would:
inspect a file, crawl the whole tree into the embedded catalog, query it (compression
usage, the most common AOV layers, deep and multipart files, errors, and the five files
most similar to one render), then re-crawl it as a nightly job would: nothing opened.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path


def run(cmd: list[str], expect: int | None = 0) -> subprocess.CompletedProcess:
    print(f"\n$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if expect is not None and proc.returncode != expect:
        raise SystemExit(f"demo: expected exit code {expect}, got {proc.returncode}")
    return proc


def main() -> int:
    tree = Path(sys.argv[1] if len(sys.argv) > 1 else "demo_tree")
    catalog = sys.argv[2] if len(sys.argv) > 2 else "demo_catalog.duckdb"
    exe = shutil.which("exr-inspector", path=str(Path(sys.executable).parent)) or "exr-inspector"
    rows = list(csv.DictReader((tree / "manifest.tsv").open(), delimiter="\t"))
    good = [tree / r["relpath"] for r in rows if r["damaged"] == "0"]
    print(f"demo tree: {tree} ({len(good)} renders, {len(rows) - len(good)} damaged files)")
    Path(catalog).unlink(missing_ok=True)

    run([exe, "inspect", str(good[0])])
    run([exe, "crawl", str(tree), "--catalog", catalog])
    queries = [
        ("compression usage",
         "SELECT compression, count(*) AS parts, count(DISTINCT file_id) AS files FROM parts "
         "GROUP BY 1 ORDER BY parts DESC"),
        ("most common AOV layers",
         "SELECT layer_name, count(DISTINCT file_id) AS files FROM channels WHERE layer_name <> '' "
         "GROUP BY 1 ORDER BY files DESC LIMIT 8"),
        ("files by render software",
         "SELECT render_software, count(DISTINCT file_id) AS files FROM parts GROUP BY 1 ORDER BY files DESC LIMIT 6"),
        ("multipart and tiled files",
         "SELECT multipart_count, is_tiled, count(*) AS files FROM files GROUP BY 1, 2 ORDER BY 1, 2"),
        ("files with more than 20 channels",
         "SELECT count(*) AS files FROM (SELECT file_id FROM channels GROUP BY 1 HAVING count(*) > 20)"),
        ("crawl errors", "SELECT error_code, path FROM crawl_errors"),
    ]
    for title, sql in queries:
        print(f"\n# {title}")
        run([exe, "query", sql, "--catalog", catalog])
    print("\n# the 5 files most similar to one render (cosine of header embeddings)")
    run([exe, "similar", str(good[len(good) // 2].resolve()), "-k", "5", "--catalog", catalog])
    print("\n# the nightly re-crawl: nothing changed, so no header is opened (a stat per file)")
    run([exe, "crawl", str(tree), "--catalog", catalog])
    print("\ndemo: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
