"""Exact codes over Arrow columns, hash-based (no sort): the dedupe behind a batch's
``attribute_values`` and ``channel_defs``. Shared by the readers and the catalog, so it
sits below both."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .catalog.schema import ATTRIBUTE_VALUES


def dedupe_rows(table: pa.Table, keys: Sequence[str], schema: pa.Schema) -> tuple[pa.Array, pa.Table]:
    """(index per row, distinct rows): each distinct combination of the ``keys`` columns once,
    in order of first appearance, with the columns of ``schema`` (functions of the keys).

    Dictionary encodings combined into one code, renumbered after each step so it stays
    small, and the first row of each code found by a reversed scatter.
    """
    n = table.num_rows
    if not n:
        return pa.array([], pa.int32()), schema.empty_table()
    code = None
    for name in keys:
        col = _array(table[name])
        if pa.types.is_boolean(col.type):
            col = col.cast(pa.int8())
        enc = pc.dictionary_encode(col, null_encoding="encode")
        idx = enc.indices.to_numpy().astype(np.int64)
        if code is not None:  # both < n: the product stays far inside int64
            idx = pc.dictionary_encode(pa.array(code * len(enc.dictionary) + idx)).indices.to_numpy()
        code = idx
    codes = pa.array(code.astype(np.int32))  # numbered by first appearance
    first = np.empty(int(code.max()) + 1, np.int64)
    first[code[::-1]] = np.arange(n - 1, -1, -1)  # the last write per code is its first row
    rows = table.select(schema.names).take(pa.array(first))
    # from_arrays, not cast: a null where the schema forbids one stays for the backend to refuse
    return codes, pa.Table.from_arrays(rows.columns, schema=schema)


def dedupe_values(attributes: pa.Table) -> tuple[pa.Array, pa.Table]:
    """(value_index per row, attribute_values): each distinct (attr_name, attr_type, value_json)
    once, in order of first appearance. The other value columns are functions of those."""
    return dedupe_rows(attributes, ("value_json", "attr_type", "attr_name"), ATTRIBUTE_VALUES)


def _array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
