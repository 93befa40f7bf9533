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
from ..catalog.schema import (
    ATTRIBUTE_VALUES,
    CHANNEL_COLUMNS,
    CHANNEL_DEFS,
    CHANNEL_INDEX,
    CRAWL_ERRORS,
    FILES,
    FINGERPRINTS,
    KEYED,
    SCHEMA_VERSION,
    TS,
    fingerprint_keys,
    vector_array,
)
from ..columnar import first_rows
from ..embed import VectorCache, embed_distinct
from ..payload import FRAME_PATTERN
from .columns import RawChunk

_SEQUENCE_RE = r"([._])\d+(\.[A-Za-z0-9]+)$"


def _mtime(ns: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(pc.divide(ns, 1000), pa.int64()).cast(TS)


def _const(n: int, value, typ: pa.DataType) -> pa.Array:
    return pa.array(np.full(n, value)).cast(typ) if value is not None else pa.nulls(n, typ)


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


def build_batch(raw: RawChunk, now: dt.datetime, run_id: str, cache: VectorCache | None = None) -> IngestBatch:
    """The catalog rows of one chunk, keyed (see ``IngestBatch``): children by file_index, each
    distinct channel fingerprint once. ``cache``: vectors a reader keeps across its chunks."""
    files = raw.files
    n = files.num_rows
    file_inverse, file_vecs, inverse, distinct = embed_distinct(raw, cache)
    path = files["file_path"]
    frame = pc.struct_field(pc.extract_regex(path, FRAME_PATTERN), "frame")
    frame = pc.if_else(pc.equal(frame, ""), pa.scalar(None, pa.string()), frame).cast(pa.int64())
    now_col = _const(n, np.datetime64(now, "us"), TS)
    out_files = pa.Table.from_arrays([
        files["file_id"], path, path, files["header_hash"], files["size_bytes"], _mtime(files["mtime_ns"]),
        files["mtime_ns"], files["inode"], files["multipart_count"], files["is_deep"], files["is_tiled"], frame,
        pc.replace_substring_regex(path, _SEQUENCE_RE, r"\1#\2"), vector_array(file_vecs[file_inverse]),
        now_col, now_col, _const(n, 1, pa.int64()), pa.nulls(n, TS), _const(n, SCHEMA_VERSION, pa.int32()),
        _const(n, __version__, pa.string()), pa.nulls(n, pa.string()),
    ], schema=FILES)

    # Two signatures can give the same vector: the fingerprints table holds each key once.
    keys = fingerprint_keys(distinct)
    unique_keys, first = np.unique(keys, return_index=True)
    fingerprints = pa.Table.from_arrays([pa.array(unique_keys), vector_array(distinct[first])],
                                        schema=FINGERPRINTS)
    # One channel definition per channel signature (its first channel), fingerprint by key.
    ch = raw.channels
    reps = ch.take(pa.array(first_rows(inverse)))
    defs = pa.Table.from_arrays([*(reps[c] for c in CHANNEL_COLUMNS[:-1]), pa.array(keys)], schema=CHANNEL_DEFS)
    channels = ch.select(KEYED["channels"].names[:-1]).append_column(CHANNEL_INDEX, pa.array(inverse.astype(np.int32)))
    tables = {"parts": raw.parts.select(KEYED["parts"].names), "channels": channels, "attributes": raw.attributes}
    tables = {name: t.cast(KEYED[name]) for name, t in tables.items()}
    # from_arrays, not cast: a null where the schema forbids one stays for the backend to refuse
    tables.update(fingerprints=fingerprints, channel_defs=defs,
                  attribute_values=pa.Table.from_arrays(raw.values.columns, schema=ATTRIBUTE_VALUES))

    err = _vanished(raw.errors)
    m = err.num_rows
    out_errors = pa.Table.from_arrays([
        err["path"], err["error_code"], err["message"], err["size_bytes"], _mtime(err["mtime_ns"]),
        _const(m, np.datetime64(now, "us"), TS), _const(m, run_id, pa.string()),
    ], schema=CRAWL_ERRORS)
    return IngestBatch.keyed(out_files, tables, out_errors, now=now)
