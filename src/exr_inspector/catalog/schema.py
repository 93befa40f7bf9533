"""Arrow schemas of the catalog tables: the single source of truth.

The DuckDB DDL, the VAST tables and batch validation are all derived from these.
Column meanings follow the original exr-inspector design (see ARCHITECTURE.md).
``file_path`` is repeated in the child tables on purpose: VAST's select has no joins.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

# 2: files.renamed_from, crawl_runs.host/pid (added as nullable columns on upgrade)
# 3: the DuckDB catalog stores child rows without file_path and each channel fingerprint once
# 4: the DuckDB catalog stores a part's attribute and channel keys as one list row
SCHEMA_VERSION = 4
EMBEDDING_DIM = 384  # files.metadata_embedding
FINGERPRINT_DIM = 128  # channels.channel_fingerprint


def vector(dim: int) -> pa.DataType:
    """Fixed-size list of non-null float32: the only vector shape VAST accepts."""
    return pa.list_(pa.field("item", pa.float32(), nullable=False), dim)


def vector_array(rows: np.ndarray) -> pa.FixedSizeListArray:
    """float32[n, dim] -> the ``vector(dim)`` array sharing the NumPy buffer (no copy)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    flat = pa.array(rows.reshape(-1), type=pa.float32())
    return pa.Array.from_buffers(vector(rows.shape[1]), rows.shape[0], [None], children=[flat])


TS = pa.timestamp("us")  # UTC, stored naive: VAST keeps zones only on 5.4+

WINDOW = pa.struct([
    pa.field("min_x", pa.int32()), pa.field("min_y", pa.int32()),
    pa.field("max_x", pa.int32()), pa.field("max_y", pa.int32()),
])

FILES = pa.schema([
    pa.field("file_id", pa.string(), nullable=False),
    pa.field("file_path", pa.string(), nullable=False),
    pa.field("file_path_normalized", pa.string(), nullable=False),
    pa.field("header_hash", pa.string(), nullable=False),
    pa.field("size_bytes", pa.int64()),
    pa.field("mtime", TS),
    pa.field("mtime_ns", pa.int64()),
    pa.field("inode", pa.int64()),
    pa.field("multipart_count", pa.int32()),
    pa.field("is_deep", pa.bool_()),
    pa.field("is_tiled", pa.bool_()),
    pa.field("frame_number", pa.int64()),
    pa.field("sequence_key", pa.string()),
    pa.field("metadata_embedding", vector(EMBEDDING_DIM)),
    pa.field("first_seen", TS),
    pa.field("last_inspected", TS),
    pa.field("inspection_count", pa.int64()),
    pa.field("missing_since", TS),
    pa.field("schema_version", pa.int32()),
    pa.field("inspector_version", pa.string()),
    pa.field("renamed_from", pa.string()),  # the previous path, when a re-crawl saw this file renamed
])

PARTS = pa.schema([
    pa.field("file_id", pa.string(), nullable=False),
    pa.field("file_path", pa.string(), nullable=False),
    pa.field("part_index", pa.int32(), nullable=False),
    pa.field("part_name", pa.string()),
    pa.field("view_name", pa.string()),
    pa.field("part_type", pa.string()),
    pa.field("width", pa.int64()),
    pa.field("height", pa.int64()),
    pa.field("display_width", pa.int64()),
    pa.field("display_height", pa.int64()),
    pa.field("data_x_offset", pa.int64()),
    pa.field("data_y_offset", pa.int64()),
    pa.field("data_window", WINDOW),
    pa.field("display_window", WINDOW),
    pa.field("pixel_aspect_ratio", pa.float64()),
    pa.field("line_order", pa.string()),
    pa.field("compression", pa.string()),
    pa.field("is_tiled", pa.bool_()),
    pa.field("tile_width", pa.int64()),
    pa.field("tile_height", pa.int64()),
    pa.field("tile_level_mode", pa.string()),
    pa.field("tile_rounding_mode", pa.string()),
    pa.field("is_deep", pa.bool_()),
    pa.field("chunk_count", pa.int64()),
    pa.field("color_space", pa.string()),
    pa.field("render_software", pa.string()),
])

CHANNELS = pa.schema([
    pa.field("file_id", pa.string(), nullable=False),
    pa.field("file_path", pa.string(), nullable=False),
    pa.field("part_index", pa.int32(), nullable=False),
    pa.field("channel_name", pa.string(), nullable=False),
    pa.field("layer_name", pa.string()),
    pa.field("component_name", pa.string()),
    pa.field("channel_type", pa.string()),
    pa.field("x_sampling", pa.int32()),
    pa.field("y_sampling", pa.int32()),
    pa.field("p_linear", pa.bool_()),
    pa.field("channel_fingerprint", vector(FINGERPRINT_DIM)),
])

ATTRIBUTES = pa.schema([
    pa.field("file_id", pa.string(), nullable=False),
    pa.field("file_path", pa.string(), nullable=False),
    pa.field("part_index", pa.int32(), nullable=False),
    pa.field("attr_name", pa.string(), nullable=False),
    pa.field("attr_type", pa.string(), nullable=False),
    pa.field("value_json", pa.string()),
    pa.field("value_text", pa.string()),
    pa.field("value_int", pa.int64()),
    pa.field("value_float", pa.float64()),
])

CRAWL_ERRORS = pa.schema([
    pa.field("path", pa.string(), nullable=False),
    pa.field("error_code", pa.string(), nullable=False),
    pa.field("message", pa.string()),
    pa.field("size_bytes", pa.int64()),
    pa.field("mtime", TS),
    pa.field("seen_at", TS),
    pa.field("run_id", pa.string()),
])

CRAWL_RUNS = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("roots", pa.list_(pa.string())),
    pa.field("started_at", TS),
    pa.field("finished_at", TS),
    pa.field("status", pa.string()),  # running | completed | failed | interrupted
    pa.field("counts", pa.string()),  # canonical JSON of the run summary
    pa.field("host", pa.string()),  # where the crawl ran: a dead pid on this host means `interrupted`
    pa.field("pid", pa.int64()),
])

CATALOG_META = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("value", pa.string()),
])

TABLES: dict[str, pa.Schema] = {
    "files": FILES,
    "parts": PARTS,
    "channels": CHANNELS,
    "attributes": ATTRIBUTES,
    "crawl_errors": CRAWL_ERRORS,
    "crawl_runs": CRAWL_RUNS,
    "catalog_meta": CATALOG_META,
}

# Tables that hold one file's rows, replaced together when its header changes.
FILE_TABLES = ("files", "parts", "channels", "attributes")
CHILD_TABLES = FILE_TABLES[1:]

# How a batch travels from the readers to a catalog (``IngestBatch``). A file's child rows
# carry ``file_index``, its row in the batch's files table, instead of repeating its id and
# its 100-byte path on each of ~75 attribute rows; and a channel carries ``fingerprint_key``
# into a table holding each distinct fingerprint once (a render tree has a few hundred
# distinct channel fingerprints for every few hundred thousand channels).
FINGERPRINTS = pa.schema([
    pa.field("fingerprint_key", pa.int64(), nullable=False),
    pa.field("channel_fingerprint", vector(FINGERPRINT_DIM), nullable=False),
])
FILE_INDEX = pa.field("file_index", pa.int32(), nullable=False)
FINGERPRINT_KEY = pa.field("fingerprint_key", pa.int64())


# An attribute's name and value, held once per distinct one in a batch (``attribute_values``):
# the frames of a sequence repeat nearly every attribute, so a chunk has ~5% distinct ones.
VALUE_COLUMNS = ("attr_name", "attr_type", "value_json", "value_text", "value_int", "value_float")
VALUE_INDEX = pa.field("value_index", pa.int32(), nullable=False)
# Likewise a channel's definition (``channel_defs``): every frame repeats its layout's channels.
CHANNEL_COLUMNS = ("channel_name", "layer_name", "component_name", "channel_type", "x_sampling", "y_sampling",
                   "p_linear", "fingerprint_key")
CHANNEL_INDEX = pa.field("channel_index", pa.int32(), nullable=False)
# child table -> (the columns it holds once per distinct row, that table, the index naming a row of it)
SHARED = {"attributes": (VALUE_COLUMNS, "attribute_values", VALUE_INDEX),
          "channels": (CHANNEL_COLUMNS, "channel_defs", CHANNEL_INDEX)}


def keyed_schema(name: str) -> pa.Schema:
    """A child table as it travels in a batch: ``file_index`` first, and for attributes and
    channels an index into the batch's table of their distinct values (``SHARED``)."""
    shared, _, index = SHARED.get(name, ((), None, None))
    rest = [f for f in TABLES[name] if f.name not in ("file_id", "file_path", "channel_fingerprint", *shared)]
    return pa.schema([FILE_INDEX, *rest, *([index] if index else [])])


KEYED = {name: keyed_schema(name) for name in CHILD_TABLES}
ATTRIBUTE_VALUES = pa.schema([ATTRIBUTES.field(c) for c in VALUE_COLUMNS])
CHANNEL_DEFS = pa.schema([FINGERPRINT_KEY if c == "fingerprint_key" else CHANNELS.field(c) for c in CHANNEL_COLUMNS])
SHARED_SCHEMAS = {"attribute_values": ATTRIBUTE_VALUES, "channel_defs": CHANNEL_DEFS}


def key_vectors(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.FixedSizeListArray, np.ndarray]:
    """(key of each row, null where the vector is; distinct vectors; their keys) of a vector column."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    dim = col.type.list_size
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    rows = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)  # valid only
    keys = np.zeros(len(col), np.int64)
    if not len(rows):
        return pa.array(keys, pa.int64(), mask=~valid), vector_array(np.zeros((0, dim), np.float32)), keys[:0]
    first, inverse = _group_rows(rows)
    distinct = fingerprint_keys(rows[first])
    keys[valid] = distinct[inverse.ravel()]
    return pa.array(keys, pa.int64(), mask=~valid), vector_array(rows[first]), distinct


_MIX = np.random.default_rng(0x5EED).integers(1, 2**63, size=1024, dtype=np.uint64) | np.uint64(1)


def _group_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each group, group of each row) for rows with equal bytes.

    Rows are grouped by a multiply-add hash of their 64-bit words, then checked word for word
    against their group's first row (sorting 1,536-byte rows cost the writer 3.4 us a file);
    any collision falls back to the exact sort.
    """
    words = rows.view(np.uint64) if rows.shape[1] % 2 == 0 and rows.shape[1] // 2 <= len(_MIX) else None
    if words is not None:
        with np.errstate(over="ignore"):
            h = (words * _MIX[:words.shape[1]]).sum(axis=1, dtype=np.uint64)
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        if (words == words[first][inverse]).all():
            return first, inverse
    _, first, inverse = np.unique(rows.view(np.dtype((np.void, rows.shape[1] * 4))).ravel(), return_index=True,
                                  return_inverse=True)
    return first, inverse.ravel()


def fingerprint_keys(vectors: np.ndarray) -> np.ndarray:
    """int64 key of each fingerprint row: its float32 bytes' BLAKE2b-64, so equal vectors share a key.

    Called on distinct vectors only (a chunk has a few hundred), so per-row hashing is cheap.
    """
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    out = np.empty(rows.shape[0], np.int64)
    for i, row in enumerate(rows):
        out[i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little", signed=True)
    return out


def validate_batch(name: str, batch: pa.RecordBatch | pa.Table) -> None:
    """Refuse a batch whose schema is not exactly the table's (names, types, order)."""
    expected = TABLES[name]
    if not batch.schema.equals(expected, check_metadata=False):
        raise TypeError(f"batch for table {name!r} does not match its schema:\n{batch.schema}\nexpected:\n{expected}")
