"""The per-file JSON payload (schema_version 1) and its canonical serialisation.

The payload is what ``inspect --json`` prints and what ``exr_inspector.inspect``
returns. ``canonical_json`` (orjson, sorted keys) is the one serialisation that
hashes and output rely on.
"""

from __future__ import annotations

import datetime as _dt
import os
import re

import orjson

from .exr.constants import DEEP_PART_TYPES, TILED_PART_TYPES
from .exr.validate import first, part_type, validate

SCHEMA_VERSION = 1

# `beauty.1001.exr` / `beauty_1001.exr`; the crawl applies the same pattern to whole path columns.
FRAME_PATTERN = r"[._](?P<frame>\d+)\.[A-Za-z0-9]+$"
_FRAME_RE = re.compile(FRAME_PATTERN)


def frame_number(path: str | None) -> int | None:
    """Frame of an image-sequence name: ``beauty.1001.exr`` and ``beauty_1001.exr`` give 1001."""
    if not path:
        return None
    m = _FRAME_RE.search(os.path.basename(path))
    return int(m.group("frame")) if m else None


def split_channel_name(name: str) -> tuple[str, str]:
    """``diffuse.R`` -> (``diffuse``, ``R``); a name with no dot is in the default layer ``""``."""
    layer, dot, component = name.rpartition(".")
    return (layer, component) if dot else ("", name)


def _iso_utc(mtime_ns: int | None) -> str | None:
    if mtime_ns is None:
        return None
    dt = _dt.datetime.fromtimestamp(mtime_ns / 1e9, tz=_dt.UTC)
    return dt.isoformat().replace("+00:00", "Z")


def build_payload(header: dict, path: str | None, size_bytes: int, mtime_ns: int | None) -> dict:
    """Assemble the payload from a parse result and the file's stat facts."""
    flags = header["flags"]
    parts = []
    channels = []
    for i, attrs in enumerate(header["parts"]):
        ptype = part_type(attrs, flags)
        parts.append({
            "index": i,
            "name": first(attrs, "name", "string"),
            "type": ptype,
            "view": first(attrs, "view", "string"),
            "is_tiled": ptype in TILED_PART_TYPES,
            "is_deep": ptype in DEEP_PART_TYPES,
            "attributes": attrs,
        })
        for ch in first(attrs, "channels", "chlist") or ():
            layer, component = split_channel_name(ch["name"])
            channels.append({
                "part_index": i,
                "name": ch["name"],
                "layer": layer,
                "component": component,
                "type": ch["type"],
                "x_sampling": ch["x_sampling"],
                "y_sampling": ch["y_sampling"],
                "p_linear": ch["p_linear"],
            })
    return {
        "schema_version": SCHEMA_VERSION,
        "file": {
            "path": path,
            "size_bytes": size_bytes,
            "mtime": _iso_utc(mtime_ns),
            "mtime_ns": mtime_ns,
            "format_version": header["version"],
            "flags": flags,
            "header_size": header["header_size"],
            "multipart_count": len(parts),
            "is_deep": any(p["is_deep"] for p in parts),
            "is_tiled": any(p["is_tiled"] for p in parts),
            "frame_number": frame_number(path),
        },
        "parts": parts,
        "channels": channels,
        "warnings": header["warnings"] + validate(header),
    }


def canonical_json(obj) -> bytes:
    """The canonical bytes of a value: orjson with sorted keys (NaN/inf become null)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def error_record(path: str | None, error) -> dict:
    """The ``--json`` line for a file that failed."""
    return {"path": path, "error": error.to_dict()}
