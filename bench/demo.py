"""`make demo`: show exr-inspector on a generated tree of renders.

Runs the real CLI (the console script in the venv) the way a user would, on files
picked from the generator's manifest: a single-part render, a multipart one, a
JSON line, and a damaged file that fails with a typed error.
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
    print(f"[exit code {proc.returncode}]")
    if expect is not None and proc.returncode != expect:
        raise SystemExit(f"demo: expected exit code {expect}, got {proc.returncode}")
    return proc


def main() -> int:
    tree = Path(sys.argv[1] if len(sys.argv) > 1 else "demo_tree")
    exe = shutil.which("exr-inspector", path=str(Path(sys.executable).parent)) or "exr-inspector"
    rows = list(csv.DictReader((tree / "manifest.tsv").open(), delimiter="\t"))
    good = [tree / r["relpath"] for r in rows if r["damaged"] == "0"]
    bad = [tree / r["relpath"] for r in rows if r["damaged"] == "1"]
    print(f"demo tree: {tree} ({len(good)} renders, {len(bad)} damaged files)")

    by_parts: dict[bool, Path] = {}
    for p in good:
        proc = subprocess.run([exe, "inspect", "--json", str(p)], capture_output=True, text=True, check=True)
        by_parts.setdefault('"multipart_count":1,' not in proc.stdout, p)
        if len(by_parts) == 2:
            break
    for p in by_parts.values():
        run([exe, "inspect", str(p)])
    run([exe, "inspect", "--json", str(good[0])])
    if bad:
        run([exe, "inspect", "--json", str(good[1]), str(bad[0])], expect=1)
    print("\ndemo: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
