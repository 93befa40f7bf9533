"""A chunk of files -> raw columnar tables: the reference the native chunk scanner must equal.

``scan_chunk(paths)`` reads and parses each file and returns a ``RawChunk``: one
Arrow table per catalog table, keyed by ``file_index`` (the file's position among
the chunk's parsed files) instead of ids, plus the error rows. The native path
(``_core.scan_chunk``) fills the same columns from C with no per-file Python
objects; ``tests/test_chunk_parity.py`` holds the two equal. Everything after this
(ids, embeddings, the final schemas) is vectorized and shared by both paths.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import xxhash

from ..columnar import dedupe_values
from ..exr import ExrError, read_header
from ..exr.constants import DEEP_PART_TYPES, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_ITEMS, ENUM_TYPES, TILED_PART_TYPES
from ..exr.reader import _core, use_native
from ..exr.validate import first, part_type
from ..payload import split_channel_name

# Attributes a part's color space and render software are read from, first match wins.
COLOR_SPACE_ATTRS = ("colorSpace", "colorInteropID", "oiio:ColorSpace", "ocio:colorspace")
SOFTWARE_ATTRS = ("software", "renderSoftware", "renderer", "creator", "hostApp")

_WINDOW = pa.struct([(k, pa.int32()) for k in ("min_x", "min_y", "max_x", "max_y")])

RAW_SCHEMAS = {
    "files": pa.schema([
        ("file_index", pa.int32()), ("file_id", pa.string()), ("file_path", pa.string()), ("size_bytes", pa.int64()),
        ("mtime_ns", pa.int64()), ("inode", pa.int64()), ("flags", pa.int32()),
        ("multipart_count", pa.int32()), ("is_deep", pa.bool_()), ("is_tiled", pa.bool_()),
        ("header_hash", pa.string()),
    ]),
    "parts": pa.schema([
        ("file_index", pa.int32()), ("part_index", pa.int32()), ("part_name", pa.string()),
        ("view_name", pa.string()), ("part_type", pa.string()), ("width", pa.int64()), ("height", pa.int64()),
        ("display_width", pa.int64()), ("display_height", pa.int64()), ("data_x_offset", pa.int64()),
        ("data_y_offset", pa.int64()), ("data_window", _WINDOW), ("display_window", _WINDOW),
        ("pixel_aspect_ratio", pa.float64()), ("line_order", pa.string()), ("compression", pa.string()),
        ("is_tiled", pa.bool_()), ("tile_width", pa.int64()), ("tile_height", pa.int64()),
        ("tile_level_mode", pa.string()), ("tile_rounding_mode", pa.string()), ("is_deep", pa.bool_()),
        ("chunk_count", pa.int64()), ("color_space", pa.string()), ("render_software", pa.string()),
    ]),
    "channels": pa.schema([
        ("file_index", pa.int32()), ("part_index", pa.int32()), ("channel_name", pa.string()),
        ("layer_name", pa.string()), ("component_name", pa.string()), ("channel_type", pa.string()),
        ("x_sampling", pa.int32()), ("y_sampling", pa.int32()), ("p_linear", pa.bool_()),
    ]),
    # An attribute row names its (name, value) by value_index into the chunk's distinct ones.
    "attributes": pa.schema([("file_index", pa.int32()), ("part_index", pa.int32()), ("value_index", pa.int32())]),
    "values": pa.schema([
        ("attr_name", pa.string()), ("attr_type", pa.string()), ("value_json", pa.string()),
        ("value_text", pa.string()), ("value_int", pa.int64()), ("value_float", pa.float64()),
    ]),
    "errors": pa.schema([
        ("path", pa.string()), ("error_code", pa.string()), ("message", pa.string()),
        ("size_bytes", pa.int64()), ("mtime_ns", pa.int64()),
    ]),
}


# What one scan may hold before it stops and leaves the rest of its paths to the next call:
# a chunk of ~1,000 ordinary files takes 10-20 MB; 1,000 crafted ones near the header limits
# could take tens of GB. (The reference scanner counts its rows' text, a lower bound.)
MAX_CHUNK_BYTES = 128 << 20

_ATTRIBUTE_ROWS = pa.schema([RAW_SCHEMAS["attributes"].field(0), RAW_SCHEMAS["attributes"].field(1),
                             *RAW_SCHEMAS["values"]])


@dataclass(frozen=True)
class Signatures:
    """Each file's and each channel's index into the chunk's distinct signatures, from the C
    scanner: exact byte strings of everything its embedding tokens are made of (a file's
    attribute names, and the whole values of ``names``; a channel's chlist entry and its
    part's type and compression). Equal bytes, equal tokens, in any chunk."""

    names: tuple[str, ...]
    files: np.ndarray  # int32, per row of RawChunk.files
    channels: np.ndarray  # int32, per row of RawChunk.channels
    file_keys: pa.Array  # binary: the distinct file signatures, by index
    channel_keys: pa.Array


@dataclass
class RawChunk:
    files: pa.Table
    parts: pa.Table
    channels: pa.Table
    attributes: pa.Table  # (file_index, part_index, value_index)
    values: pa.Table  # each distinct (attr_name, attr_type, value_json) once, in order of first appearance
    errors: pa.Table
    signatures: Signatures | None = None  # the native scanner's; the reference scanner makes none
    consumed: int | None = None  # how many of the given paths it covers (None: all); see scan_chunk

    def tables(self) -> dict[str, pa.Table]:
        return {"files": self.files, "parts": self.parts, "channels": self.channels,
                "attributes": self.attributes, "values": self.values, "errors": self.errors}

    def attribute_rows(self) -> pa.Table:
        """One row per attribute with its name and value columns (what the value index stands for)."""
        a = self.attributes
        v = self.values.take(a["value_index"])
        return pa.Table.from_arrays([a["file_index"], a["part_index"], *v.columns],
                                    names=["file_index", "part_index", *v.column_names])


def hash128(data: bytes) -> str:
    """32 hex digits: XXH64 with seeds 0 and 1. Stable across runs, processes and machines."""
    return f"{xxhash.xxh64_intdigest(data, 0):016x}{xxhash.xxh64_intdigest(data, 1):016x}"


def header_hash(parts: list[list[dict]]) -> str:
    """Hash of the orjson canonical serialisation of every part's attribute list."""
    return hash128(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS))


def _text(v) -> str | None:
    return v if isinstance(v, str) else None


def _first_text(attrs: list[dict], names: Sequence[str]) -> str | None:
    for n in names:
        v = _text(first(attrs, n, "string"))
        if v is not None:
            return v
    return None


def _window(box: dict | None) -> dict | None:
    if box is None:
        return None
    (x0, y0), (x1, y1) = box["min"], box["max"]
    return {"min_x": x0, "min_y": y0, "max_x": x1, "max_y": y1}


def _scalars(type_name: str, value) -> tuple[str | None, int | None, float | None]:
    """value_text, value_int, value_float: the typed columns SQL filters on."""
    if type_name == "string" or type_name in ENUM_TYPES:
        return _text(value), None, None
    if type_name == "int":
        return None, value, None
    if type_name in ("float", "double"):
        return None, None, value
    if type_name == "rational" and value[1] != 0:
        return None, None, value[0] / value[1]
    return None, None, None


def _part_row(fi: int, pi: int, attrs: list[dict], flags: int) -> dict:
    ptype = part_type(attrs, flags)
    dw = first(attrs, "dataWindow", "box2i")
    disp = first(attrs, "displayWindow", "box2i")
    tiles = first(attrs, "tiles", "tiledesc")
    return {
        "file_index": fi, "part_index": pi,
        "part_name": _text(first(attrs, "name", "string")),
        "view_name": _text(first(attrs, "view", "string")),
        "part_type": ptype,
        "width": dw["max"][0] - dw["min"][0] + 1 if dw else None,
        "height": dw["max"][1] - dw["min"][1] + 1 if dw else None,
        "display_width": disp["max"][0] - disp["min"][0] + 1 if disp else None,
        "display_height": disp["max"][1] - disp["min"][1] + 1 if disp else None,
        "data_x_offset": dw["min"][0] if dw else None,
        "data_y_offset": dw["min"][1] if dw else None,
        "data_window": _window(dw),
        "display_window": _window(disp),
        "pixel_aspect_ratio": first(attrs, "pixelAspectRatio", "float"),
        "line_order": first(attrs, "lineOrder", "lineOrder"),
        "compression": first(attrs, "compression", "compression"),
        "is_tiled": ptype in TILED_PART_TYPES,
        "tile_width": tiles["x_size"] if tiles else None,
        "tile_height": tiles["y_size"] if tiles else None,
        "tile_level_mode": tiles["level_mode"] if tiles else None,
        "tile_rounding_mode": tiles["rounding_mode"] if tiles else None,
        "is_deep": ptype in DEEP_PART_TYPES,
        "chunk_count": first(attrs, "chunkCount", "int"),
        "color_space": _first_text(attrs, COLOR_SPACE_ATTRS),
        "render_software": _first_text(attrs, SOFTWARE_ATTRS),
    }


def _i64(v: int) -> int:
    """Inode numbers are unsigned 64-bit; the catalog stores them as int64 bit patterns."""
    return struct.unpack("<q", struct.pack("<Q", v))[0]


def _array(typ: pa.DataType, col: tuple) -> pa.Array:
    n, nulls, validity, values, data = col
    bufs = [pa.py_buffer(validity) if validity is not None else None, pa.py_buffer(values)]
    if data is not None:
        bufs.append(pa.py_buffer(data))
    return pa.Array.from_buffers(typ, n, bufs, null_count=nulls)


def _from_native(cols: dict, schema: pa.Schema) -> pa.Table:
    arrays = []
    for f in schema:
        if pa.types.is_struct(f.type):
            children = [_array(c.type, cols[f"{f.name}.{c.name}"]) for c in f.type]
            mask = children[0].is_null()
            arrays.append(pa.StructArray.from_arrays(children, fields=list(f.type), mask=mask))
        else:
            arrays.append(_array(f.type, cols[f.name]))
    return pa.Table.from_arrays(arrays, schema=schema)


def scan_chunk(
    paths: Sequence[str],
    *,
    native: bool | None = None,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
    signature_names: tuple[str, ...] = (),
    max_chunk_bytes: int | None = None,
) -> RawChunk:
    """Read and parse every file of a chunk into columns: in C when available, else row by row.

    The C scanner also returns ``Signatures``, made with ``signature_names``. Either scanner
    stops once its columns hold ``max_chunk_bytes`` (default ``MAX_CHUNK_BYTES``; files
    with huge headers), after at least one file: the result then covers only the first
    ``consumed`` paths, and the caller scans the rest in another call.
    """
    budget = MAX_CHUNK_BYTES if max_chunk_bytes is None else max_chunk_bytes
    if not use_native(native):
        return scan_chunk_reference(paths, max_header_bytes=max_header_bytes, max_items=max_items,
                                    max_chunk_bytes=budget)
    out = _core.scan_chunk(list(paths), max_header_bytes, max_items, tuple(signature_names), budget)
    tables = {k: _from_native(out[k], RAW_SCHEMAS[k]) for k in ("files", "parts", "channels", "attributes", "values")}
    errors = pa.Table.from_pylist(
        [dict(zip(RAW_SCHEMAS["errors"].names, row, strict=True)) for row in out["errors"]],
        schema=RAW_SCHEMAS["errors"],
    )
    # (the scanner merges values whose bytes differ but whose canonical JSON is one, as the
    # reference, keyed by that JSON, does: NaN payloads, chlist padding)
    sig = Signatures(
        names=tuple(signature_names),
        files=_array(pa.int32(), out["files"]["signature"]).to_numpy(),
        channels=_array(pa.int32(), out["channels"]["signature"]).to_numpy(),
        file_keys=_array(pa.binary(), out["file_signatures"]["bytes"]),
        channel_keys=_array(pa.binary(), out["channel_signatures"]["bytes"]),
    )
    return RawChunk(errors=errors, signatures=sig, consumed=out["consumed"], **tables)


def scan_chunk_reference(
    paths: Sequence[str],
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_chunk_bytes: int | None = None,
) -> RawChunk:
    """Reference implementation: parse each file, then build the chunk's columns row by row.

    With ``max_chunk_bytes``, stops before a file once the rows' text (paths, names, values)
    reaches it, as the C scanner does with its columns.
    """
    rows: dict[str, list[dict]] = {k: [] for k in RAW_SCHEMAS}
    held, consumed = 0, len(paths)
    for i, path in enumerate(paths):
        if i and max_chunk_bytes is not None and held >= max_chunk_bytes:
            consumed = i
            break
        held += len(path)
        try:
            fh = read_header(path, native=False, max_header_bytes=max_header_bytes, max_items=max_items)
        except ExrError as e:
            rows["errors"].append({"path": path, "error_code": e.code, "message": str(e),
                                   "size_bytes": e.size_bytes, "mtime_ns": e.mtime_ns})
            continue
        fi = len(rows["files"])
        h = fh.header
        types = [part_type(a, h["flags"]) for a in h["parts"]]
        rows["files"].append({
            "file_index": fi, "file_id": hash128(path.encode()), "file_path": path,
            "size_bytes": fh.size_bytes, "mtime_ns": fh.mtime_ns,
            "inode": _i64(fh.inode), "flags": h["flags"], "multipart_count": len(h["parts"]),
            "is_deep": any(t in DEEP_PART_TYPES for t in types),
            "is_tiled": any(t in TILED_PART_TYPES for t in types),
            "header_hash": header_hash(h["parts"]),
        })
        for pi, attrs in enumerate(h["parts"]):
            rows["parts"].append(_part_row(fi, pi, attrs, h["flags"]))
            for ch in first(attrs, "channels", "chlist") or ():
                layer, comp = split_channel_name(ch["name"])
                rows["channels"].append({
                    "file_index": fi, "part_index": pi, "channel_name": ch["name"], "layer_name": layer,
                    "component_name": comp, "channel_type": ch["type"], "x_sampling": ch["x_sampling"],
                    "y_sampling": ch["y_sampling"], "p_linear": ch["p_linear"],
                })
            for a in attrs:
                text, ival, fval = _scalars(a["type"], a["value"])
                value_json = orjson.dumps(a["value"], option=orjson.OPT_SORT_KEYS).decode()
                held += len(a["name"]) + len(a["type"]) + len(value_json) + len(text or "")
                rows["attributes"].append({
                    "file_index": fi, "part_index": pi, "attr_name": a["name"], "attr_type": a["type"],
                    "value_json": value_json, "value_text": text, "value_int": ival, "value_float": fval,
                })
    full = pa.Table.from_pylist(rows.pop("attributes"), schema=_ATTRIBUTE_ROWS)
    index, values = dedupe_values(full.select(RAW_SCHEMAS["values"].names))
    attributes = pa.Table.from_arrays([full["file_index"], full["part_index"], index], schema=RAW_SCHEMAS["attributes"])
    return RawChunk(attributes=attributes, values=values.cast(RAW_SCHEMAS["values"]), consumed=consumed,
                    **{k: pa.Table.from_pylist(v, schema=RAW_SCHEMAS[k]) for k, v in rows.items() if k != "values"})
