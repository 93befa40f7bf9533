#!/usr/bin/env python3
"""Recall@10 of the header embeddings on a generated render tree, against the issue's baseline.

For every file, the fraction of its 10 nearest neighbours by cosine (itself
excluded) that come from the same generator template, averaged over files. The
template id is used only to score, never to embed. The baseline is the issue's
"six structural numbers padded with sha256 bytes of the JSON".

    python bench/eval_recall.py [--files 2000] [--templates 40] [--seed 0] [--dir DIR]
        [--without PREFIX ...]

``--without attr:show=`` etc. drops tokens by prefix to show what a kind is worth.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exr_inspector.catalog.schema import EMBEDDING_DIM  # noqa: E402
from exr_inspector.crawl.columns import RawChunk, scan_chunk  # noqa: E402
from exr_inspector.embed import embed_chunk, embed_distinct  # noqa: E402
from exr_inspector.embed.features import file_tokens  # noqa: E402
from exr_inspector.embed.kernels import hash_strings, scatter_rows  # noqa: E402
from exr_inspector.exr.constants import COMPRESSION_NAMES  # noqa: E402

from gen_tree import generate  # noqa: E402

K = 10
TARGET = 0.98


def recall_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = K) -> float:
    """Mean fraction of each row's k nearest cosine neighbours (self excluded) sharing its label."""
    v = vectors.astype(np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argpartition(-sim, k, axis=1)[:, :k]
    return float((labels[nn] == labels[:, None]).mean())


def baseline(raw: RawChunk, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """The issue's baseline: six raw structural numbers, then the file's sha256 repeated as bytes/255.

(part count, channel count, first part's data width and height, compression code,
attribute count), the 32-byte sha256 of the file's canonical attributes JSON tiled
to fill the rest, L2-normalised. The hash part is different for every frame (capDate,
timeCode, ... are in the JSON), so only the six numbers group a sequence.
"""
    n = raw.files.num_rows
    files = raw.files.to_pydict()
    first = raw.parts.filter(pc.equal(raw.parts["part_index"], 0)).to_pydict()
    by_file = {fi: i for i, fi in enumerate(first["file_index"])}
    n_channels = np.bincount(raw.channels["file_index"].to_numpy(), minlength=n)
    n_attrs = np.bincount(raw.attributes["file_index"].to_numpy(), minlength=n)
    docs: list[list] = [[] for _ in range(n)]
    a = raw.attribute_rows().select(["file_index", "part_index", "attr_name", "attr_type", "value_json"]).to_pydict()
    for fi, pi, name, typ, val in zip(*a.values(), strict=True):
        docs[fi].append([pi, name, typ, val])
    out = np.zeros((n, dim), np.float64)
    for fi in range(n):
        p = by_file.get(fi)
        comp = first["compression"][p] if p is not None else None
        out[fi, :6] = (
            files["multipart_count"][fi],
            n_channels[fi],
            first["width"][p] if p is not None else 0,
            first["height"][p] if p is not None else 0,
            COMPRESSION_NAMES.index(comp) if comp in COMPRESSION_NAMES else -1,
            n_attrs[fi],
        )
        digest = hashlib.sha256(orjson.dumps(docs[fi], option=orjson.OPT_SORT_KEYS)).digest()
        pad = digest * -(-(dim - 6) // len(digest))
        out[fi, 6:] = np.frombuffer(pad[: dim - 6], np.uint8) / 255.0
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def ours_without(raw: RawChunk, prefixes: list[str]) -> np.ndarray:
    """Our file vectors with the tokens starting with any of ``prefixes`` dropped (ablation)."""
    rows, tokens, weights = file_tokens(raw)
    keep = np.ones(len(tokens), bool)
    for p in prefixes:
        keep &= ~pc.starts_with(tokens, p).to_numpy(zero_copy_only=False)
    idx = pa.array(np.nonzero(keep)[0])
    return scatter_rows(rows[keep], hash_strings(tokens.take(idx)), weights[keep], raw.files.num_rows, EMBEDDING_DIM)


def evaluate(root: Path, prefixes: list[str]) -> None:
    """Scan the tree, embed it, and print recall@10 (ours, baseline) and throughput."""
    manifest = list(csv.DictReader((root / "manifest.tsv").open(encoding="utf-8"), delimiter="\t"))
    manifest = [r for r in manifest if r["damaged"] == "0"]
    paths = [str(root / r["relpath"]) for r in manifest]
    t0 = time.perf_counter()
    raw = scan_chunk(paths, native=True)
    scan_s = time.perf_counter() - t0
    if raw.errors.num_rows:
        print(f"warning: {raw.errors.num_rows} files failed to parse")
    label_of = {str(root / r["relpath"]): int(r["template_id"]) for r in manifest}
    labels = np.array([label_of[p] for p in raw.files["file_path"].to_pylist()])

    embed_chunk(raw)  # compile / load the numba cache outside the timing
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        files_v, chans_v = embed_chunk(raw)
        best = min(best, time.perf_counter() - t0)
    n = raw.files.num_rows
    print(f"files {n}, templates {len(set(labels.tolist()))}, channels {raw.channels.num_rows}, "
          f"attributes {raw.attributes.num_rows}; scan {n / scan_s:,.0f} files/s")
    print(f"embed (features + kernels, files and channels): {best * 1e3:.1f} ms = {n / best:,.0f} files/s")
    embed_distinct(raw)
    fast = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        f_inv, f_vecs, c_inv, c_vecs = embed_distinct(raw)
        fast = min(fast, time.perf_counter() - t0)
    same = f_vecs[f_inv].tobytes() == files_v.tobytes() and c_vecs[c_inv].tobytes() == chans_v.tobytes()
    print(f"embed once per signature (what the crawl runs): {fast * 1e3:.1f} ms = {n / fast:,.0f} files/s, "
          f"{len(f_vecs)} file and {len(c_vecs)} channel signatures, {'bit-identical' if same else 'DIFFERENT'}")
    ours = recall_at_k(files_v, labels)
    print(f"recall@{K} ours     {ours:.4f}  (target >= {TARGET}: {'met' if ours >= TARGET else 'NOT met'})")
    print(f"recall@{K} baseline {recall_at_k(baseline(raw), labels):.4f}  (six numbers + sha256 of the JSON)")
    if prefixes:
        print(f"recall@{K} ours without {prefixes}: {recall_at_k(ours_without(raw, prefixes), labels):.4f}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--templates", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", type=Path, help="use (or generate into) this directory instead of a temp one")
    ap.add_argument("--without", action="append", default=[], metavar="PREFIX", help="ablate tokens by prefix")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eval_recall_") as tmp:
        root = args.dir or Path(tmp)
        if not (root / "manifest.tsv").is_file():
            generate(root, args.files, templates=args.templates, seed=args.seed)
        evaluate(root, args.without)
    return 0


if __name__ == "__main__":
    sys.exit(main())
