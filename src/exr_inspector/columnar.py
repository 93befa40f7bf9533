"""Exact row codes over Arrow columns, hash-based (no sort): the dedupe behind a batch's
``attribute_values`` and ``channel_defs`` and the readers' signatures.
Shared by the readers and the catalog, so it sits below both."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .catalog.schema import ATTRIBUTE_VALUES


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
