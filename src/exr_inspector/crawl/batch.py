"""RawChunk -> IngestBatch: ids, derived columns and embeddings, all vectorized per chunk.

Shared by the native and reference scanners, so whatever produced the raw columns
the catalog rows come out the same. No per-file Python work happens here.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__
from ..catalog.base import IngestBatch
from ..catalog.schema import ATTRIBUTES, CHANNELS, CRAWL_ERRORS, FILES, PARTS, SCHEMA_VERSION, TS
from ..embed import embed_chunk
from ..payload import FRAME_PATTERN
from .columns import RawChunk

_SEQUENCE_RE = r"([._])\d+(\.[A-Za-z0-9]+)$"


def _vectors(rows: np.ndarray, typ: pa.DataType) -> pa.FixedSizeListArray:
    """float32[n, dim] -> fixed-size list array sharing the NumPy buffer (no copy)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    flat = pa.array(rows.reshape(-1), type=pa.float32())
    return pa.Array.from_buffers(typ, rows.shape[0], [None], children=[flat])


def _mtime(ns: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(pc.divide(ns, 1000), pa.int64()).cast(TS)


def _const(n: int, value, typ: pa.DataType) -> pa.Array:
    return pa.array(np.full(n, value)).cast(typ) if value is not None else pa.nulls(n, typ)


def _children(table: pa.Table, files: pa.Table) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """file_id and file_path of each child row, taken from its file by file_index."""
    idx = table["file_index"]
    return pc.take(files["file_id"], idx), pc.take(files["file_path"], idx)


def attach_file_keys(batch: IngestBatch) -> IngestBatch:
    """Child tables shipped with ``file_index`` get their file_id and file_path back.

    Workers send children keyed by index: repeating a 100-byte path on every
    attribute row would more than double what crosses the process boundary.
    """
    def expand(table: pa.Table, schema: pa.Schema) -> pa.Table:
        if "file_index" not in table.column_names:
            return table
        fid, fpath = _children(table, batch.files)
        rest = [table[name] for name in schema.names[2:]]
        return pa.Table.from_arrays([fid, fpath, *rest], schema=schema)

    return IngestBatch(batch.files, expand(batch.parts, PARTS), expand(batch.channels, CHANNELS),
                       expand(batch.attributes, ATTRIBUTES), batch.errors, batch.now)


def error_rows(paths: Sequence[str], codes: Sequence[str], messages: Sequence[str], now: dt.datetime,
               run_id: str) -> pa.Table:
    """crawl_errors rows for failures found outside the scanner (walk errors, dead readers)."""
    n = len(paths)
    return pa.table({
        "path": pa.array(paths, pa.string()), "error_code": pa.array(codes, pa.string()),
        "message": pa.array(messages, pa.string()), "size_bytes": pa.nulls(n, pa.int64()),
        "mtime": pa.nulls(n, TS), "seen_at": pa.array([now] * n, TS), "run_id": pa.array([run_id] * n, pa.string()),
    }, schema=CRAWL_ERRORS)


def _vanished(errors: pa.Table) -> pa.Table:
    """A file the walk listed but the reader could not open because it is gone: code ``vanished``."""
    if errors.num_rows == 0:
        return errors
    gone = [code == "io_error" and not os.path.lexists(path)
            for path, code in zip(errors["path"].to_pylist(), errors["error_code"].to_pylist(), strict=True)]
    if not any(gone):
        return errors
    mask = pa.array(gone)
    codes = pc.if_else(mask, "vanished", errors["error_code"])
    msgs = pc.if_else(mask, pc.binary_join_element_wise(
        errors["path"], ": vanished between the walk and the read (deleted or renamed meanwhile)", ""),
        errors["message"])
    return errors.set_column(errors.schema.get_field_index("error_code"), "error_code", codes).set_column(
        errors.schema.get_field_index("message"), "message", msgs)


def build_batch(raw: RawChunk, now: dt.datetime, run_id: str, *, keyed: bool = False) -> IngestBatch:
    """The catalog rows of one chunk, in the catalog schemas (children keyed by file_index if ``keyed``)."""
    files = raw.files
    n = files.num_rows
    file_vecs, channel_vecs = embed_chunk(raw)
    path = files["file_path"]
    frame = pc.struct_field(pc.extract_regex(path, FRAME_PATTERN), "frame")
    frame = pc.if_else(pc.equal(frame, ""), pa.scalar(None, pa.string()), frame).cast(pa.int64())
    now_col = _const(n, np.datetime64(now, "us"), TS)
    out_files = pa.Table.from_arrays([
        files["file_id"], path, path, files["header_hash"], files["size_bytes"], _mtime(files["mtime_ns"]),
        files["mtime_ns"], files["inode"], files["multipart_count"], files["is_deep"], files["is_tiled"], frame,
        pc.replace_substring_regex(path, _SEQUENCE_RE, r"\1#\2"), _vectors(file_vecs, FILES.field("metadata_embedding").type),
        now_col, now_col, _const(n, 1, pa.int64()), pa.nulls(n, TS), _const(n, SCHEMA_VERSION, pa.int32()),
        _const(n, __version__, pa.string()), pa.nulls(n, pa.string()),
    ], schema=FILES)

    def child(table: pa.Table, schema: pa.Schema, columns: list) -> pa.Table:
        if keyed:
            return pa.Table.from_arrays([table["file_index"], *columns],
                                        schema=pa.schema([pa.field("file_index", pa.int32()), *list(schema)[2:]]))
        fid, fpath = _children(table, files)
        return pa.Table.from_arrays([fid, fpath, *columns], schema=schema)

    parts, ch, at = raw.parts, raw.channels, raw.attributes
    out_parts = child(parts, PARTS, [parts[name] for name in PARTS.names[2:]])
    out_channels = child(ch, CHANNELS, [ch[name] for name in CHANNELS.names[2:-1]]
                         + [_vectors(channel_vecs, CHANNELS.field("channel_fingerprint").type)])
    out_attrs = child(at, ATTRIBUTES, [at[name] for name in ATTRIBUTES.names[2:]])

    err = _vanished(raw.errors)
    m = err.num_rows
    out_errors = pa.Table.from_arrays([
        err["path"], err["error_code"], err["message"], err["size_bytes"], _mtime(err["mtime_ns"]),
        _const(m, np.datetime64(now, "us"), TS), _const(m, run_id, pa.string()),
    ], schema=CRAWL_ERRORS)
    return IngestBatch(out_files, out_parts, out_channels, out_attrs, out_errors, now=now)
