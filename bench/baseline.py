"""The straightforward per-file pipeline the crawler is measured against.

For each file: read its header with OpenImageIO (if installed) or
``OpenEXR.File(path, header_only=True)``, build a payload dict in Python, a
Python embedding (six structural numbers padded with SHA-256 bytes of the JSON
to 384 floats, L2-normalised) and write it in ONE DuckDB transaction per file
(a ``files`` row plus its ``attributes`` rows). Nothing is batched, vectorised
or shared between files: this is the shape most first versions take.

    python bench/baseline.py TREE [--limit 1000] [--catalog X.duckdb]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import OpenEXR

DIM = 384

try:  # OpenImageIO is optional; the OpenEXR binding is a project dependency
    import OpenImageIO as _oiio  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _oiio = None

READER = "OpenImageIO" if _oiio is not None else "OpenEXR.File(header_only=True)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    file_path VARCHAR PRIMARY KEY, size_bytes BIGINT, mtime DOUBLE, multipart_count INTEGER,
    channel_count INTEGER, width INTEGER, height INTEGER, header_json VARCHAR,
    metadata_embedding FLOAT[384], inspected_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS attributes (
    file_path VARCHAR, part_index INTEGER, attr_name VARCHAR, attr_type VARCHAR, value_json VARCHAR);
CREATE TABLE IF NOT EXISTS crawl_errors (path VARCHAR, message VARCHAR, seen_at TIMESTAMP);
"""

ATTR_INSERT = ("INSERT INTO attributes SELECT ?, unnest(?::INTEGER[]), unnest(?::VARCHAR[]), "
               "unnest(?::VARCHAR[]), unnest(?::VARCHAR[])")


def _jsonable(v: Any) -> Any:
    """Whatever the binding returns, as plain JSON values (one Python call per attribute)."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Fraction):
        return [v.numerator, v.denominator]
    if isinstance(v, bytes):
        return {"base64": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, OpenEXR.Channel):
        # header_only: the binding infers type() from the (absent) pixels, so it is not available
        return {"name": v.name, "x_sampling": v.xSampling, "y_sampling": v.ySampling, "p_linear": bool(v.pLinear)}
    return str(v)


def read_header_openexr(path: str) -> list[dict[str, Any]]:
    """One dict of attributes per part (header only)."""
    f = OpenEXR.File(path, header_only=True)
    parts = []
    for p in f.parts:
        parts.append({k: _jsonable(v) for k, v in p.header.items()})
    return parts


def read_header_oiio(path: str) -> list[dict[str, Any]]:  # pragma: no cover - needs OpenImageIO
    inp = _oiio.ImageInput.open(path)
    if inp is None:
        raise OSError(_oiio.geterror())
    parts = []
    sub = 0
    try:
        while inp.seek_subimage(sub, 0):
            spec = inp.spec()
            attrs = {a.name: _jsonable(a.value) for a in spec.extra_attribs}
            attrs["dataWindow"] = {"min": [spec.x, spec.y], "max": [spec.x + spec.width - 1, spec.y + spec.height - 1]}
            attrs["channels"] = [{"name": n} for n in spec.channelnames]
            parts.append(attrs)
            sub += 1
    finally:
        inp.close()
    return parts


read_header = read_header_oiio if _oiio is not None else read_header_openexr


def _window_size(win: Any) -> tuple[int, int]:
    try:
        if isinstance(win, dict):
            (x0, y0), (x1, y1) = win["min"], win["max"]
        else:
            (x0, y0), (x1, y1) = win
        return int(x1) - int(x0) + 1, int(y1) - int(y0) + 1
    except (TypeError, ValueError, KeyError):
        return 0, 0


def build_payload(path: str, st: os.stat_result, parts: list[dict[str, Any]]) -> dict[str, Any]:
    width, height = _window_size(parts[0].get("dataWindow")) if parts else (0, 0)
    return {
        "path": path,
        "size_bytes": st.st_size,
        "mtime": st.st_mtime,
        "multipart_count": len(parts),
        "channel_count": sum(len(p.get("channels") or []) for p in parts),
        "attribute_count": sum(len(p) for p in parts),
        "width": width,
        "height": height,
        "is_tiled": any("tiles" in p for p in parts),
        "parts": parts,
    }


def embed(payload: dict[str, Any], header_json: str) -> list[float]:
    """Six structural numbers, then SHA-256 bytes of the JSON (chained) up to 384 floats; L2-normalised."""
    vec = [
        float(payload["multipart_count"]), float(payload["channel_count"]), float(payload["attribute_count"]),
        math.log1p(payload["width"]), math.log1p(payload["height"]), float(payload["is_tiled"]),
    ]
    data = header_json.encode()
    block = hashlib.sha256(data).digest()
    counter = 0
    while len(vec) < DIM:
        for b in block:
            if len(vec) == DIM:
                break
            vec.append(b / 255.0 - 0.5)
        counter += 1
        block = hashlib.sha256(block + counter.to_bytes(4, "little")).digest()
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


@dataclass
class BaselineResult:
    files: int = 0
    errors: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("stat+read_header", "payload+json", "embed", "transaction"), 0.0))

    @property
    def files_per_s(self) -> float:
        return (self.files + self.errors) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        n = max(1, self.files + self.errors)
        return {
            "reader": READER, "files": self.files, "errors": self.errors, "seconds": self.seconds,
            "files_per_s": self.files_per_s,
            "ms_per_file": {k: v / n * 1e3 for k, v in self.stage_seconds.items()},
        }


def run_baseline(paths: list[str], catalog: str) -> BaselineResult:
    """Process ``paths`` one by one into a fresh DuckDB file at ``catalog``."""
    con = duckdb.connect(catalog)
    con.execute(SCHEMA)
    res = BaselineResult()
    st_ = res.stage_seconds
    clock = time.perf_counter
    t_start = clock()
    try:
        for path in paths:
            t0 = clock()
            try:
                st = os.stat(path)
                parts = read_header(path)
            except Exception as e:  # noqa: BLE001 - the binding raises assorted types
                t1 = clock()
                st_["stat+read_header"] += t1 - t0
                con.execute("BEGIN TRANSACTION")
                con.execute("INSERT INTO crawl_errors VALUES (?, ?, now())", [path, str(e)])
                con.execute("COMMIT")
                st_["transaction"] += clock() - t1
                res.errors += 1
                continue
            t1 = clock()
            payload = build_payload(path, st, parts)
            header_json = json.dumps(payload["parts"], sort_keys=True)
            part_ix, names, types, values = [], [], [], []
            for i, part in enumerate(parts):
                for name, value in part.items():
                    part_ix.append(i)
                    names.append(name)
                    types.append(type(value).__name__)
                    values.append(json.dumps(value, sort_keys=True))
            t2 = clock()
            vec = embed(payload, header_json)
            t3 = clock()
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM attributes WHERE file_path = ?", [path])
            con.execute("DELETE FROM files WHERE file_path = ?", [path])
            con.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [path, payload["size_bytes"], payload["mtime"], payload["multipart_count"],
                 payload["channel_count"], payload["width"], payload["height"], header_json, vec],
            )
            # One statement for all of the file's attribute rows: executemany() would cost ~25 ms
            # for 76 rows and make this baseline a straw man; unnest() of lists costs ~3 ms.
            con.execute(ATTR_INSERT, [path, part_ix, names, types, values])
            con.execute("COMMIT")
            t4 = clock()
            st_["stat+read_header"] += t1 - t0
            st_["payload+json"] += t2 - t1
            st_["embed"] += t3 - t2
            st_["transaction"] += t4 - t3
            res.files += 1
    finally:
        res.seconds = clock() - t_start
        con.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree", type=Path)
    ap.add_argument("--limit", type=int, default=1000, help="files to process (spread over the tree)")
    ap.add_argument("--catalog", default=None, help="DuckDB file (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    paths = sorted(str(p) for p in args.tree.rglob("*.exr"))
    if args.limit and len(paths) > args.limit:
        step = len(paths) / args.limit
        paths = [paths[int(i * step)] for i in range(args.limit)]
    with tempfile.TemporaryDirectory(prefix="exr-baseline-") as tmp:
        res = run_baseline(paths, args.catalog or os.path.join(tmp, "baseline.duckdb"))
    print(json.dumps(res.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
