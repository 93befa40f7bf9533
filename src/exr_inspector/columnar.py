"""Exact row codes over Arrow columns, hash-based (no sort): the dedupe behind a batch's
``attribute_values`` and ``channel_defs`` and the readers' signatures; and path hashes.
Shared by the readers and the catalog, so it sits below both."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .catalog.schema import ATTRIBUTE_VALUES
from .exr.reader import _core


def row_codes(columns: Sequence[pa.Array | pa.ChunkedArray | np.ndarray]) -> np.ndarray:
    """int64 code of each row, equal exactly where every column is equal (nulls equal nulls),
    numbered 0, 1, ... by first appearance. A NumPy column is taken as codes already.

    Dictionary encodings combined one column at a time and renumbered after each, so the
    combined code stays below rows * (rows + 1): far inside int64.
    """
    code = None
    for col in columns:
        if isinstance(col, np.ndarray):
            idx = col.astype(np.int64, copy=False)
        else:
            col = combined(col)
            if pa.types.is_boolean(col.type):
                col = col.cast(pa.int8())
            idx = pc.dictionary_encode(col, null_encoding="encode").indices.to_numpy().astype(np.int64)
        code = idx if code is None else code * (int(idx.max()) + 1 if len(idx) else 1) + idx
        code = pc.dictionary_encode(pa.array(code)).indices.to_numpy().astype(np.int64)
    return code if code is not None else np.zeros(0, np.int64)


def first_rows(codes: np.ndarray) -> np.ndarray:
    """The first row of each code of ``row_codes`` (a reversed scatter: the last write wins)."""
    first = np.empty(int(codes.max()) + 1 if len(codes) else 0, np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return first


def dedupe_rows(table: pa.Table, keys: Sequence[str], schema: pa.Schema) -> tuple[pa.Array, pa.Table]:
    """(index per row, distinct rows): each distinct combination of the ``keys`` columns once,
    in order of first appearance, with the columns of ``schema`` (functions of the keys)."""
    if not table.num_rows:
        return pa.array([], pa.int32()), schema.empty_table()
    code = row_codes([table[k] for k in keys])
    rows = table.select(schema.names).take(pa.array(first_rows(code)))
    # from_arrays, not cast: a null where the schema forbids one stays for the backend to refuse
    return pa.array(code.astype(np.int32)), pa.Table.from_arrays(rows.columns, schema=schema)


def dedupe_values(attributes: pa.Table) -> tuple[pa.Array, pa.Table]:
    """(value_index per row, attribute_values): each distinct (attr_name, attr_type, value_json)
    once, in order of first appearance. The other value columns are functions of those."""
    return dedupe_rows(attributes, ("value_json", "attr_type", "attr_name"), ATTRIBUTE_VALUES)


def combined(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (a chunked one's chunks combined)."""
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def string_buffers(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy (data uint8, offsets int32|int64) views of a string array, slice offset applied.

    The offsets are returned as stored (absolute into the data buffer), so a sliced
    array needs no copy of its bytes. Nulls are refused: a null has no bytes to hash.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        off_type = np.int32
    elif pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        off_type = np.int64
    else:
        raise TypeError(f"expected a string array, got {arr.type}")
    if arr.null_count:
        raise ValueError("string arrays to hash must not contain nulls")
    _, off_buf, data_buf = arr.buffers()
    if off_buf is None or len(arr) == 0:
        return np.empty(0, np.uint8), np.zeros(1, off_type)
    offsets = np.frombuffer(off_buf, off_type)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    # Always read-only: numba compiles one specialisation per writability, and an immutable
    # buffer (IPC, DuckDB) would otherwise load a second one at run time (~6 ms a process).
    data = data.view()
    data.flags.writeable = False
    return data, offsets


def hash_paths(paths: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """XXH64 (seed 0) of each path's UTF-8 bytes, uint64: the catalog's ``path_hash`` and the
    crawl's seen-set. In C over the Arrow buffers; the xxhash package without it."""
    data, offsets = string_buffers(paths)
    if _core is not None:
        return np.frombuffer(_core.hash_strings(data, offsets.astype(np.int64)), np.uint64)
    import xxhash

    raw = data.tobytes()
    return np.fromiter((xxhash.xxh64_intdigest(raw[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)),
                       np.uint64, len(offsets) - 1)
