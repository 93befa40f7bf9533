"""IngestBatch's keyed form: what the readers ship and DuckDB stores must expand back exactly."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from catalog_contract import make_batch, paths_of
from exr_inspector.catalog.base import CatalogError, IngestBatch
from exr_inspector.catalog.schema import ATTRIBUTES, KEYED, key_vectors, vector_array
from exr_inspector.columnar import dedupe_values


def _attrs(types, jsons, names=None):
    n = len(types)
    return pa.table({
        "attr_name": pa.array(names or ["name"] * n, pa.string()),
        "attr_type": pa.array(types, pa.string()), "value_json": pa.array(jsons, pa.string()),
        "value_text": pa.array([j.strip('"') if j and j.startswith('"') else None for j in jsons], pa.string()),
        "value_int": pa.array([int(j) if j and j.isdigit() else None for j in jsons], pa.int64()),
        "value_float": pa.nulls(n, pa.float64()),
    })


def test_dedupe_values_keeps_each_value_once_in_first_appearance_order():
    types = ["int", "string", "int", "box2i", "v4i", "int", "string", "opaque", "opaque", "int"]
    jsons = ["1", '"a"', "1", "[0,0,1,1]", "[0,0,1,1]", "2", '"a"', None, None, "1"]
    names = ["n"] * 9 + ["other"]
    attrs = _attrs(types, jsons, names)
    index, values = dedupe_values(attrs)
    # same json, other type (or other name): another value
    assert index.to_pylist() == [0, 1, 0, 2, 3, 4, 1, 5, 5, 6]
    assert values.schema.names == list(ATTRIBUTES.names[3:])
    assert values.num_rows == 7
    back = values.take(index)
    for name in values.column_names:
        assert back[name].combine_chunks().equals(attrs[name].combine_chunks()), name


def test_dedupe_values_empty():
    index, values = dedupe_values(_attrs([], []))
    assert len(index) == 0 and values.num_rows == 0


def test_key_vectors_share_keys_between_equal_rows_and_keep_nulls():
    rows = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    col = pa.concat_arrays([vector_array(rows), pa.nulls(1, vector_array(rows).type)])
    keys, distinct, distinct_keys = key_vectors(col)
    k = keys.to_pylist()
    assert k[0] == k[2] != k[1] and k[3] is None
    assert len(distinct) == 2 and sorted(distinct_keys.tolist()) == sorted({k[0], k[1]})
    again, _, _ = key_vectors(vector_array(rows[::-1]))  # a key depends on the vector only
    assert again.to_pylist() == [k[2], k[1], k[0]]


def test_batch_from_catalog_tables_expands_back_exactly():
    batch = make_batch(paths_of(4), n_parts=2, n_channels=5, n_attrs=3)
    keyed = IngestBatch.keyed(batch.files, batch.keyed_tables(), batch.errors, batch.now)
    for name, table in batch.tables().items():
        assert keyed.tables()[name].equals(table), name
    assert {n: keyed.children[n].schema for n in KEYED} == KEYED
    assert keyed.fingerprints.num_rows == 4 * 2 * 5  # make_batch's fingerprints are all distinct
    assert keyed.values.num_rows == 3  # its attribute values repeat per part and file


def test_concat_shifts_file_and_value_indexes():
    a, b = make_batch(paths_of(2), n_attrs=2), make_batch(paths_of(5)[2:], ["h2"] * 3, n_attrs=4)
    both = IngestBatch.concat([IngestBatch.keyed(a.files, a.keyed_tables(), a.errors, a.now),
                               IngestBatch.keyed(b.files, b.keyed_tables(), b.errors, b.now)])
    both.checked_keys()
    for name in ("parts", "channels", "attributes"):
        assert both.logical(name).equals(pa.concat_tables([a.logical(name), b.logical(name)])), name


def test_checked_keys_refuses_dangling_indexes():
    batch = make_batch(paths_of(2))
    tables = batch.keyed_tables()
    attrs = tables["attributes"]
    i = attrs.schema.get_field_index("value_index")
    tables["attributes"] = attrs.set_column(i, attrs.schema.field(i), pa.array([99] * attrs.num_rows, pa.int32()))
    with pytest.raises(CatalogError, match="value_index"):
        IngestBatch.keyed(batch.files, tables, batch.errors).checked_keys()
    tables = batch.keyed_tables()
    parts = tables["parts"]
    tables["parts"] = parts.set_column(0, parts.schema.field(0), pa.array([7] * parts.num_rows, pa.int32()))
    with pytest.raises(CatalogError, match="file_index"):
        IngestBatch.keyed(batch.files, tables, batch.errors).checked_keys()


def test_key_vectors_group_by_bytes_not_by_value():
    """-0.0 and 0.0 compare equal but are different bytes, as are two NaN payloads: different keys."""
    nan_a = np.frombuffer(np.uint32(0x7FC00000).tobytes(), np.float32)[0]
    nan_b = np.frombuffer(np.uint32(0x7FC00001).tobytes(), np.float32)[0]
    rows = np.array([[0.0, 1.0], [-0.0, 1.0], [nan_a, 0.0], [nan_b, 0.0], [0.0, 1.0]], np.float32)
    keys, distinct, _ = key_vectors(vector_array(rows))
    k = keys.to_pylist()
    assert k[0] == k[4] and len({k[0], k[1], k[2], k[3]}) == 4 and len(distinct) == 4
    rng = np.random.default_rng(1)
    many = rng.integers(0, 3, size=(500, 6)).astype(np.float32)  # many repeats
    keys, distinct, _ = key_vectors(vector_array(many))
    exact = np.unique(many.view(np.dtype((np.void, 24))).ravel(), return_inverse=True)[1].ravel()
    got = np.array(keys.to_pylist())
    assert np.array_equal(got[:, None] == got[None, :], exact[:, None] == exact[None, :])
    assert len(distinct) == len(set(exact.tolist()))
