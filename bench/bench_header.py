"""Per-file header read cost, every reader measured in one run on the same files.

Prints the median microseconds per file of each reader and the ratios the issue
targets: native vs OpenEXR's header-only read (>= 3x faster), and native vs the
``open()+read(64 KiB)`` floor (within 1.5x). Absolute times on a shared 2-core
machine are noise; the ratios are what to read.

    python bench/bench_header.py            # corpus (../shared/corpus) or a generated tree
    python bench/bench_header.py --quick    # CI smoke run: few rounds, never fails on numbers
"""

from __future__ import annotations

import argparse
import gc
import os

# numpy's BLAS threads spin while idle and steal the second core from every reader.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import statistics
import sys
import tempfile
import time
from pathlib import Path

import OpenEXR  # noqa: E402

from exr_inspector import inspect  # noqa: E402
from exr_inspector.exr import native_available, read_header  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def corpus_files() -> list[str]:
    root = Path(os.environ.get("EXR_INSPECTOR_CORPUS", HERE.parent.parent / "shared" / "corpus"))
    manifest = root / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    files = []
    for line in manifest.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) >= 5 and not cols[4].startswith(("DAMAGED", "INVALID", "INCOMPLETE", "TRUNCATED", "EDGE")):
            files.append(str(root / cols[0]))
    return files


def generated_files(n: int) -> list[str]:
    from gen_tree import generate

    out = Path(tempfile.mkdtemp(prefix="exr-bench-"))
    generate(out, n, templates=20, seed=1)
    return [str(p) for p in sorted(out.rglob("*.exr"))]


def openexr_header(path: str):
    f = OpenEXR.File(path, header_only=True)
    return [p.header for p in f.parts]


def floor_read(path: str):
    with open(path, "rb") as f:
        return f.read(65536)


def readers() -> dict:
    out = {
        "floor open+read(64KiB)": floor_read,
        "native read_header": lambda p: read_header(p, native=True),
        "native inspect (payload)": lambda p: inspect(p, native=True),
        "python reference": lambda p: read_header(p, native=False),
        "OpenEXR.File(header_only)": openexr_header,
    }
    try:
        import OpenImageIO as oiio

        def oiio_header(path: str):
            inp = oiio.ImageInput.open(path)
            specs = []
            sub = 0
            while inp.seek_subimage(sub, 0):
                specs.append(inp.spec().extra_attribs)
                sub += 1
            inp.close()
            return specs

        out["OpenImageIO ImageInput"] = oiio_header
    except ImportError:
        pass
    return out


def usable(files: list[str]) -> list[str]:
    """Files every reader can read, so all of them do the same work."""
    ok = []
    for f in files:
        try:
            openexr_header(f)
            read_header(f)
            ok.append(f)
        except Exception:  # noqa: BLE001 - the binding fails whole files (deepImageState, bad UTF-8, ...)
            continue
    return ok


def measure(files: list[str], rounds: int) -> dict[str, float]:
    fns = readers()
    # Long-lived objects (numpy, the binding, pytest) make every gen-2 collection a
    # walk of the whole heap; freeze them so each reader pays only for its own garbage.
    gc.collect()
    gc.freeze()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm the page cache and any lazy imports
        for f in files:
            fn(f)
    for _ in range(rounds):
        for name, fn in fns.items():  # interleaved, so drift hits every reader alike
            t0 = time.perf_counter()
            for f in files:
                fn(f)
            samples[name].append((time.perf_counter() - t0) / len(files) * 1e6)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few rounds (CI smoke)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--generated", type=int, default=0, help="use N generated files instead of the corpus")
    args = ap.parse_args()
    if not native_available():
        print("native extension not built: nothing to compare", file=sys.stderr)
        return 1
    files = generated_files(args.generated) if args.generated else corpus_files()
    source = f"{args.generated} generated files" if args.generated else "the shared corpus"
    if not files:
        files, source = generated_files(300), "300 generated files (corpus absent)"
    files = usable(files)
    rounds = args.rounds or (5 if args.quick else 41)
    res = measure(files, rounds)
    print(f"header read, {len(files)} files from {source}, median of {rounds} rounds, us per file")
    for name, us in res.items():
        print(f"  {name:<28} {us:9.2f} us")
    nat = res["native read_header"]
    floor = res["floor open+read(64KiB)"]
    oexr = res["OpenEXR.File(header_only)"]
    print("ratios (measured in this run):")
    print(f"  OpenEXR header-only / native   = {oexr / nat:6.2f}x  (target >= 3)")
    print(f"  native / floor                 = {nat / floor:6.2f}x  (target <= 1.5)")
    print(f"  python reference / native      = {res['python reference'] / nat:6.2f}x")
    if "OpenImageIO ImageInput" in res:
        print(f"  OpenImageIO / native           = {res['OpenImageIO ImageInput'] / nat:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
