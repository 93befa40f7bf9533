"""Backend-agnostic conformance suite for ``Catalog`` implementations.

A backend's test module subclasses ``CatalogContract`` and provides a
``catalog`` fixture yielding a fresh, empty catalog (fsspec style). Tests read
rows back through ``read_table``, which defaults to ``catalog.query``; a
backend without raw SQL (VAST) overrides it with its own scan.

``make_batch`` builds schema-exact Arrow tables with numpy (no per-row Python
beyond the per-path ids), so benchmarks can use it too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exr_inspector.catalog.base import Catalog, CatalogError, IngestBatch, UpsertStats
from exr_inspector.catalog.schema import (
    ATTRIBUTES,
    CHANNELS,
    CRAWL_ERRORS,
    EMBEDDING_DIM,
    FILES,
    FINGERPRINT_DIM,
    PARTS,
    SCHEMA_VERSION,
    TABLES,
    WINDOW,
)

T0 = dt.datetime(2024, 1, 1, 12, 0, 0)

# Columns that identify a row in each table (used to sort before comparing).
ROW_KEYS = {
    "files": ["file_path_normalized"],
    "parts": ["file_id", "part_index"],
    "channels": ["file_id", "part_index", "channel_name"],
    "attributes": ["file_id", "part_index", "attr_name"],
    "crawl_errors": ["path", "error_code"],
}


def file_id_of(path: str) -> str:
    """A stable id derived from the normalized path, as the crawler derives it."""
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _vectors(v: np.ndarray, schema: pa.Schema, name: str) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(v.ravel(), pa.float32()), type=schema.field(name).type)


def _table(schema: pa.Schema, cols: dict) -> pa.Table:
    """A table of exactly ``schema``: each column converted to its field's type."""
    arrays = [cols[f.name] if isinstance(cols[f.name], pa.Array) else pa.array(cols[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def make_errors(n: int, *, prefix: str = "/bad/file", run_id: str = "run-1", now: dt.datetime = T0) -> pa.Table:
    return _table(CRAWL_ERRORS, {
        "path": [f"{prefix}{i}.exr" for i in range(n)],
        "error_code": ["E_TRUNCATED"] * n,
        "message": ["header truncated"] * n,
        "size_bytes": np.arange(n, dtype=np.int64),
        "mtime": [now] * n,
        "seen_at": [now] * n,
        "run_id": [run_id] * n,
    })


def make_batch(
    paths: Sequence[str],
    header_hash: str | Sequence[str] = "h1",
    n_parts: int = 2,
    n_channels: int = 3,
    n_attrs: int = 4,
    embedding_seed: int = 0,
    *,
    now: dt.datetime = T0,
    size_bytes: int = 1000,
    n_errors: int = 0,
    missing_since: dt.datetime | None = None,
) -> IngestBatch:
    """An ``IngestBatch`` for ``paths``: n_parts parts per file, n_channels channels and n_attrs attributes per part."""
    n = len(paths)
    hashes = [header_hash] * n if isinstance(header_hash, str) else list(header_hash)
    ids = pa.array([file_id_of(p) for p in paths], pa.string())
    path_arr = pa.array(paths, pa.string())
    idx = np.arange(n, dtype=np.int64)
    files = _table(FILES, {
        "file_id": ids,
        "file_path": path_arr,
        "file_path_normalized": path_arr,
        "header_hash": hashes,
        "size_bytes": size_bytes + idx,
        "mtime": pa.array(np.full(n, np.datetime64(now, "us"))),
        "mtime_ns": 1_700_000_000_000_000_000 + idx,
        "inode": 10_000 + idx,
        "multipart_count": np.full(n, n_parts, np.int32),
        "is_deep": np.zeros(n, bool),
        "is_tiled": np.zeros(n, bool),
        "frame_number": idx,
        "sequence_key": pa.array(["seq_a", "seq_b"]).take(idx % 2),
        "metadata_embedding": _vectors(unit_vectors(n, EMBEDDING_DIM, embedding_seed), FILES, "metadata_embedding"),
        "first_seen": pa.array(np.full(n, np.datetime64(now, "us"))),
        "last_inspected": pa.array(np.full(n, np.datetime64(now, "us"))),
        "inspection_count": np.ones(n, np.int64),
        "missing_since": [missing_since] * n,
        "schema_version": np.full(n, SCHEMA_VERSION, np.int32),
        "inspector_version": ["test"] * n,
        "renamed_from": [None] * n,
    })

    # parts: n_parts rows per file
    pf = np.repeat(idx, n_parts)
    pi = np.tile(np.arange(n_parts, dtype=np.int32), n)
    m = len(pf)
    box = pa.StructArray.from_arrays(
        [pa.array(np.zeros(m, np.int32)), pa.array(np.zeros(m, np.int32)),
         pa.array(np.full(m, 1919, np.int32)), pa.array(np.full(m, 1079, np.int32))],
        fields=list(WINDOW),
    )
    parts = _table(PARTS, {
        "file_id": ids.take(pf), "file_path": path_arr.take(pf), "part_index": pi,
        "part_name": pa.array([f"part{i}" for i in range(n_parts)]).take(pi), "view_name": [None] * m,
        "part_type": ["scanlineimage"] * m, "width": np.full(m, 1920), "height": np.full(m, 1080),
        "display_width": np.full(m, 1920), "display_height": np.full(m, 1080),
        "data_x_offset": np.zeros(m, np.int64), "data_y_offset": np.zeros(m, np.int64),
        "data_window": box, "display_window": box, "pixel_aspect_ratio": np.ones(m),
        "line_order": ["INCREASING_Y"] * m, "compression": pa.array(["PIZ", "ZIP"]).take(pi % 2),
        "is_tiled": np.zeros(m, bool), "tile_width": [None] * m, "tile_height": [None] * m,
        "tile_level_mode": [None] * m, "tile_rounding_mode": [None] * m, "is_deep": np.zeros(m, bool),
        "chunk_count": np.full(m, 68), "color_space": ["ACEScg"] * m, "render_software": ["Arnold"] * m,
    })

    # channels: n_channels per part
    cf = np.repeat(pf, n_channels)
    cp = np.repeat(pi, n_channels)
    cj = np.tile(np.arange(n_channels), m)
    names = pa.array([f"layer{j // 4}.{'RGBA'[j % 4]}" for j in range(n_channels)])
    channels = _table(CHANNELS, {
        "file_id": ids.take(cf), "file_path": path_arr.take(cf), "part_index": cp,
        "channel_name": names.take(cj),
        "layer_name": pa.array([f"layer{j // 4}" for j in range(n_channels)], pa.string()).take(cj),
        "component_name": pa.array(["RGBA"[j % 4] for j in range(n_channels)], pa.string()).take(cj),
        "channel_type": ["HALF"] * len(cf), "x_sampling": np.ones(len(cf), np.int32),
        "y_sampling": np.ones(len(cf), np.int32), "p_linear": np.zeros(len(cf), bool),
        "channel_fingerprint": _vectors(unit_vectors(len(cf), FINGERPRINT_DIM, embedding_seed + 1), CHANNELS,
                                        "channel_fingerprint"),
    })

    # attributes: n_attrs per part
    af = np.repeat(pf, n_attrs)
    ap = np.repeat(pi, n_attrs)
    aj = np.tile(np.arange(n_attrs), m)
    attributes = _table(ATTRIBUTES, {
        "file_id": ids.take(af), "file_path": path_arr.take(af), "part_index": ap,
        "attr_name": pa.array([f"attr{j}" for j in range(n_attrs)], pa.string()).take(aj),
        "attr_type": ["int"] * len(af), "value_json": pa.array(aj.astype(str), pa.string()),
        "value_text": [None] * len(af), "value_int": aj.astype(np.int64), "value_float": aj.astype(np.float64),
    })
    return IngestBatch(files, parts, channels, attributes, make_errors(n_errors, now=now), now=now)


def paths_of(n: int, root: str = "/show/seq/shot") -> list[str]:
    return [f"{root}/render.{i:05d}.exr" for i in range(n)]


class CatalogContract:
    """The behaviour every catalog backend must have. Subclasses provide ``catalog``."""

    @pytest.fixture
    def catalog(self) -> Catalog:
        raise NotImplementedError("a backend's test class provides a fresh, empty `catalog` fixture")

    def read_table(self, catalog: Catalog, table: str) -> pa.Table:
        """All rows of ``table``, sorted by its row key (override for backends without raw SQL)."""
        t = catalog.query(f"SELECT * FROM {table}")
        return t.sort_by([(k, "ascending") for k in ROW_KEYS.get(table, [])]) if table in ROW_KEYS else t

    def files_by_path(self, catalog: Catalog) -> dict[str, dict]:
        return {r["file_path_normalized"]: r for r in self.read_table(catalog, "files").to_pylist()}

    def snapshot(self, catalog: Catalog) -> dict[str, pa.Table]:
        return {name: self.read_table(catalog, name) for name in ROW_KEYS}

    def counts(self, catalog: Catalog) -> dict[str, int]:
        return {name: catalog.count(name) for name in ROW_KEYS}

    # -- schema ---------------------------------------------------------

    def test_ensure_schema_idempotent(self, catalog: Catalog):
        catalog.ensure_schema()
        catalog.ensure_schema()
        assert all(catalog.count(t) == 0 for t in TABLES if t != "catalog_meta")
        catalog.upsert(make_batch(paths_of(3)))
        catalog.ensure_schema()
        assert catalog.count("files") == 3

    # -- upsert ---------------------------------------------------------

    def test_insert_counts(self, catalog: Catalog):
        stats = catalog.upsert(make_batch(paths_of(4), n_parts=2, n_channels=3, n_attrs=5, n_errors=1))
        assert stats == UpsertStats(inserted=4, replaced=0, unchanged=0, errors=1)
        assert self.counts(catalog) == {"files": 4, "parts": 8, "channels": 24, "attributes": 40, "crawl_errors": 1}

    def test_upsert_idempotent(self, catalog: Catalog):
        paths = paths_of(5)
        catalog.upsert(make_batch(paths))
        before = self.counts(catalog)
        later = T0 + dt.timedelta(hours=1)
        stats = catalog.upsert(make_batch(paths, now=later))
        assert stats == UpsertStats(inserted=0, replaced=0, unchanged=5, errors=0)
        assert self.counts(catalog) == before
        for row in self.files_by_path(catalog).values():
            assert row["inspection_count"] == 2
            assert row["first_seen"] == T0
            assert row["last_inspected"] == later

    def test_unchanged_updates_audit_columns_only(self, catalog: Catalog):
        paths = paths_of(3)
        catalog.upsert(make_batch(paths, n_parts=2, missing_since=T0))
        children = {t: self.read_table(catalog, t) for t in ("parts", "channels", "attributes")}
        later = T0 + dt.timedelta(days=1)
        # Same header, new stat facts; the different child layout must be ignored.
        stats = catalog.upsert(make_batch(paths, n_parts=1, size_bytes=5000, embedding_seed=9, now=later))
        assert stats.unchanged == 3
        for t, table in children.items():
            assert self.read_table(catalog, t).equals(table), t
        rows = self.files_by_path(catalog)
        assert [rows[p]["size_bytes"] for p in paths] == [5000, 5001, 5002]
        assert all(rows[p]["missing_since"] is None for p in paths)
        assert all(rows[p]["multipart_count"] == 2 for p in paths)  # header columns untouched
        known = catalog.lookup(paths)
        assert sorted(known["size_bytes"].to_pylist()) == [5000, 5001, 5002]

    def test_changed_file_replaced(self, catalog: Catalog):
        paths = paths_of(3)
        catalog.upsert(make_batch(paths, n_parts=3, n_channels=4, n_attrs=5))
        later = T0 + dt.timedelta(hours=2)
        stats = catalog.upsert(make_batch(paths[:1], "h2", n_parts=1, n_channels=2, n_attrs=3, now=later))
        assert stats == UpsertStats(inserted=0, replaced=1, unchanged=0, errors=0)
        assert self.counts(catalog) == {
            "files": 3, "parts": 2 * 3 + 1, "channels": 2 * 12 + 2, "attributes": 2 * 15 + 3, "crawl_errors": 0}
        fid = file_id_of(paths[0])
        for table, n in (("parts", 1), ("channels", 2), ("attributes", 3)):
            t = self.read_table(catalog, table)
            assert pc.sum(pc.equal(t["file_id"], fid)).as_py() == n, table
        row = self.files_by_path(catalog)[paths[0]]
        assert (row["header_hash"], row["multipart_count"]) == ("h2", 1)
        assert (row["first_seen"], row["last_inspected"], row["inspection_count"]) == (T0, later, 2)

    def test_mixed_batch_stats(self, catalog: Catalog):
        a, b, c = paths_of(3)
        catalog.upsert(make_batch([a, b]))
        stats = catalog.upsert(make_batch([a, b, c], ["h1", "h2", "h1"], n_errors=2))
        assert stats == UpsertStats(inserted=1, replaced=1, unchanged=1, errors=2)
        hashes = dict(zip(*catalog.lookup([a, b, c]).select(["file_path_normalized", "header_hash"]).to_pydict().values(),
                          strict=True))
        assert hashes == {a: "h1", b: "h2", c: "h1"}
        assert self.counts(catalog)["parts"] == 3 * 2

    def test_rollback_on_failure_midway(self, catalog: Catalog):
        a, b, c = paths_of(3)
        catalog.upsert(make_batch([a, b], n_errors=1))
        before = self.snapshot(catalog)
        bad = make_batch([a, b, c], ["h1", "h2", "h1"], n_errors=3, now=T0 + dt.timedelta(hours=1))
        # The last attribute row breaks NOT NULL: the failure comes after the update/delete steps.
        names = bad.attributes["attr_name"].to_pylist()
        names[-1] = None
        i = ATTRIBUTES.get_field_index("attr_name")
        attrs = bad.attributes.set_column(i, ATTRIBUTES.field(i), pa.array(names, pa.string()))
        bad = IngestBatch(bad.files, bad.parts, bad.channels, attrs, bad.errors, bad.now)
        with pytest.raises(CatalogError):
            catalog.upsert(bad)
        after = self.snapshot(catalog)
        for name in before:
            assert after[name].equals(before[name]), name
        # Still usable afterwards.
        assert catalog.upsert(make_batch([c])).inserted == 1

    def test_duplicate_paths_in_batch_rejected(self, catalog: Catalog):
        a, b = paths_of(2)
        with pytest.raises(CatalogError, match="more than once"):
            catalog.upsert(make_batch([a, b, a]))
        assert catalog.count("files") == 0

    def test_schema_mismatch_rejected(self, catalog: Catalog):
        batch = make_batch(paths_of(2))
        batch.files = batch.files.drop_columns(["inode"])
        with pytest.raises(CatalogError, match="files"):
            catalog.upsert(batch)
        assert catalog.count("files") == 0

    def test_empty_batch(self, catalog: Catalog):
        assert catalog.upsert(IngestBatch.empty()) == UpsertStats()

    def test_crawl_errors_appended(self, catalog: Catalog):
        catalog.upsert(make_batch([], n_errors=2))
        catalog.upsert(make_batch(paths_of(1), n_errors=3))
        assert catalog.count("crawl_errors") == 5
        errs = self.read_table(catalog, "crawl_errors")
        assert set(errs["error_code"].to_pylist()) == {"E_TRUNCATED"}

    # -- reading --------------------------------------------------------

    def test_lookup_returns_known_subset(self, catalog: Catalog):
        paths = paths_of(10)
        catalog.upsert(make_batch(paths[:6]))
        out = catalog.lookup([paths[1], paths[4], paths[8], "/elsewhere/x.exr", paths[1]])
        assert out.column_names == ["file_path_normalized", "size_bytes", "mtime_ns", "inode", "header_hash",
                                    "missing_since"]
        rows = {r["file_path_normalized"]: r for r in out.to_pylist()}
        assert set(rows) == {paths[1], paths[4]}
        assert rows[paths[4]] == {"file_path_normalized": paths[4], "size_bytes": 1004,
                                  "mtime_ns": 1_700_000_000_000_000_004, "inode": 10_004, "header_hash": "h1",
                                  "missing_since": None}
        assert catalog.lookup([]).num_rows == 0
        assert catalog.lookup(pa.array([paths[0], paths[9]])).num_rows == 1  # an Arrow array works too

    def test_lookup_100k_paths(self, catalog: Catalog):
        known = paths_of(50)
        catalog.upsert(make_batch(known, n_parts=1, n_channels=1, n_attrs=1))
        query = pa.array(paths_of(100_000, root="/other")).to_pylist() + known[::2]
        out = catalog.lookup(query)
        assert sorted(out["file_path_normalized"].to_pylist()) == sorted(known[::2])

    def test_search_ranking(self, catalog: Catalog):
        paths = paths_of(30)
        batch = make_batch(paths, embedding_seed=3)
        catalog.upsert(batch)
        vecs = batch.files["metadata_embedding"].combine_chunks().flatten().to_numpy().reshape(-1, EMBEDDING_DIM)
        out = catalog.search(vecs[7], k=5)
        assert out.column_names[:3] == ["file_path", "file_id", "score"]
        assert out["file_path"][0].as_py() == paths[7]
        assert out["file_id"][0].as_py() == file_id_of(paths[7])
        assert out["score"][0].as_py() == pytest.approx(1.0, abs=1e-4)
        expected = np.argsort(-(vecs @ vecs[7]), kind="stable")[:5]
        assert out["file_path"].to_pylist() == [paths[i] for i in expected]
        scores = out["score"].to_pylist()
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose(scores, (vecs @ vecs[7])[expected], atol=1e-4)

    def test_search_where(self, catalog: Catalog):
        paths = paths_of(30)
        batch = make_batch(paths, embedding_seed=4)
        catalog.upsert(batch)
        q = batch.files["metadata_embedding"][7].values.to_numpy()
        some = [paths[1], paths[2], paths[7]]
        out = catalog.search(q, k=10, where={"file_path": some})
        assert out["file_path"][0].as_py() == paths[7]
        assert set(out["file_path"].to_pylist()) == set(some)
        odd = catalog.search(q, k=50, where={"sequence_key": "seq_b", "frame_number": [1, 3, 7, 8]})
        assert set(odd["file_path"].to_pylist()) == {paths[1], paths[3], paths[7]}
        assert catalog.search(q, k=5, where={"file_path": "x' OR '1'='1"}).num_rows == 0
        assert catalog.search(q, k=5, where={"file_path": []}).num_rows == 0
        assert catalog.search(q, k=50, where={"missing_since": None}).num_rows == 30  # None matches NULL
        with pytest.raises(ValueError):
            catalog.search(q, k=5, where={"file_path = file_path OR 1": 1})
        with pytest.raises(ValueError):
            catalog.search(q, k=5, where={"no_such_column": 1})
        with pytest.raises(ValueError):
            catalog.search(q[:10], k=5)

    def test_get_embedding(self, catalog: Catalog):
        paths = paths_of(3)
        batch = make_batch(paths, embedding_seed=5)
        catalog.upsert(batch)
        got = catalog.get_embedding(paths[2])
        assert got.dtype == np.float32 and got.shape == (EMBEDDING_DIM,)
        np.testing.assert_array_equal(got, batch.files["metadata_embedding"][2].values.to_numpy())
        assert catalog.get_embedding("/nope.exr") is None

    def test_runs_recorded(self, catalog: Catalog):
        catalog.start_run("run-1", ["/show/a", "/show/b"], T0)
        catalog.start_run("run-2", ["/show/c"], T0)
        end = T0 + dt.timedelta(minutes=5)
        catalog.finish_run("run-1", "completed", {"files": 10, "errors": 1}, end)
        runs = {r["run_id"]: r for r in self.read_table(catalog, "crawl_runs").to_pylist()}
        assert runs["run-1"]["roots"] == ["/show/a", "/show/b"]
        assert (runs["run-1"]["status"], runs["run-1"]["finished_at"]) == ("completed", end)
        assert orjson.loads(runs["run-1"]["counts"]) == {"files": 10, "errors": 1}
        assert (runs["run-2"]["status"], runs["run-2"]["finished_at"]) == ("running", None)
        with pytest.raises(CatalogError):
            catalog.finish_run("run-404", "failed", {}, end)

    def test_count_unknown_table(self, catalog: Catalog):
        with pytest.raises(ValueError):
            catalog.count("files; DROP TABLE files")

    # -- incremental re-crawls ------------------------------------------------

    def test_iter_prefix_streams_a_subtree(self, catalog: Catalog):
        a, b = paths_of(30, "/show/a"), paths_of(20, "/show/ab")
        catalog.upsert(make_batch(a + b))
        got = [rb for rb in catalog.iter_prefix("/show/a/", ["file_path_normalized", "inode"], batch_rows=7)]
        paths = sorted(p for rb in got for p in rb.column("file_path_normalized").to_pylist())
        assert paths == sorted(a)
        assert all(rb.schema.names == ["file_path_normalized", "inode"] for rb in got)
        assert sum(rb.num_rows for rb in catalog.iter_prefix("/nowhere/", ["file_id"])) == 0

    def test_scan_where(self, catalog: Catalog):
        paths = paths_of(1500)
        catalog.upsert(make_batch(paths))
        some = paths[::2] + ["/not/there.exr"]
        got = catalog.scan("files", ["file_path_normalized", "inode"], where={"file_path_normalized": some})
        assert sorted(got["file_path_normalized"].to_pylist()) == sorted(paths[::2])
        assert got.column_names == ["file_path_normalized", "inode"]
        assert catalog.scan("files", ["file_id"], where={"inode": [10_003, 10_007]}).num_rows == 2
        many = list(range(10_000, 10_000 + 1200)) + list(range(50_000, 52_000))  # a long list on a number column
        got = catalog.scan("files", ["inode"], where={"inode": many})
        assert sorted(got["inode"].to_pylist()) == list(range(10_000, 11_200))
        with pytest.raises(ValueError):
            catalog.scan("files", ["no_such_column"])

    def test_touch_and_missing_marks(self, catalog: Catalog):
        paths = paths_of(6)
        catalog.upsert(make_batch(paths))
        gone = T0 + dt.timedelta(days=1)
        assert catalog.mark_missing(paths[:3], gone) == 3
        assert catalog.mark_missing(paths[:4], gone + dt.timedelta(days=1)) == 1  # already-marked keep their date
        rows = self.files_by_path(catalog)
        assert [rows[p]["missing_since"] for p in paths] == [gone] * 3 + [gone + dt.timedelta(days=1), None, None]
        assert self.counts(catalog)["parts"] == 12  # rows are kept
        back = T0 + dt.timedelta(days=3)
        assert catalog.touch([paths[0], paths[5]], back) == 2
        rows = self.files_by_path(catalog)
        assert rows[paths[0]]["missing_since"] is None and rows[paths[0]]["last_inspected"] == back
        assert rows[paths[5]]["inspection_count"] == 2 and rows[paths[1]]["inspection_count"] == 1
        assert catalog.lookup([paths[1]])["missing_since"].to_pylist() == [gone]
        assert catalog.touch([], back) == 0 and catalog.mark_missing([], back) == 0

    def test_prune_missing(self, catalog: Catalog):
        paths = paths_of(5)
        catalog.upsert(make_batch(paths, n_parts=2, n_channels=2, n_attrs=2))
        catalog.mark_missing(paths[:2], T0)
        catalog.mark_missing(paths[2:3], T0 + dt.timedelta(days=10))
        assert catalog.prune(T0 + dt.timedelta(days=5), prefix="/elsewhere/") == 0
        assert catalog.prune(T0 + dt.timedelta(days=5)) == 2
        assert sorted(self.files_by_path(catalog)) == paths[2:]
        assert self.counts(catalog) == {"files": 3, "parts": 6, "channels": 12, "attributes": 12, "crawl_errors": 0}
        assert catalog.prune(T0 + dt.timedelta(days=5)) == 0

    def test_apply_renames(self, catalog: Catalog):
        old, new = paths_of(3, "/old"), paths_of(3, "/new")
        catalog.upsert(make_batch(old))
        catalog.upsert(make_batch(new[:2]))
        assert catalog.apply_renames(old[:2], new[:2]) == 2
        rows = self.files_by_path(catalog)
        assert sorted(rows) == sorted([old[2], *new[:2]])
        assert [rows[p]["renamed_from"] for p in new[:2]] == old[:2]
        assert self.counts(catalog)["parts"] == 3 * 2
        assert pc.sum(pc.is_in(self.read_table(catalog, "channels")["file_id"],
                               value_set=pa.array([file_id_of(p) for p in old[:2]]))).as_py() in (0, None)

    def test_runs_status_and_origin(self, catalog: Catalog):
        catalog.start_run("r1", ["/a"], T0)
        catalog.start_run("r2", ["/b"], T0)
        catalog.finish_run("r2", "interrupted", None, None)
        running = catalog.runs("running")
        assert running["run_id"].to_pylist() == ["r1"]
        assert running["pid"].to_pylist() == [os.getpid()] and running["host"][0].as_py()
        assert sorted(catalog.runs()["status"].to_pylist()) == ["interrupted", "running"]

    # -- several batches, one transaction ----------------------------------

    def test_upsert_stream_is_one_transaction(self, catalog: Catalog):
        a, b, c = paths_of(9, "/a"), paths_of(9, "/b"), paths_of(9, "/c")
        catalog.upsert(make_batch(a))
        stats = catalog.upsert_stream(iter([make_batch(a[:3], "h2"), make_batch(b, n_errors=1), make_batch(c)]))
        assert stats == UpsertStats(inserted=18, replaced=3, unchanged=0, errors=1)
        assert self.counts(catalog) == {"files": 27, "parts": 54, "channels": 162, "attributes": 216,
                                        "crawl_errors": 1}
        before = self.snapshot(catalog)
        bad = make_batch(paths_of(2, "/d"))
        names = bad.attributes["attr_name"].to_pylist()
        names[0] = None
        i = ATTRIBUTES.get_field_index("attr_name")
        attrs = bad.attributes.set_column(i, ATTRIBUTES.field(i), pa.array(names, pa.string()))
        bad = IngestBatch(bad.files, bad.parts, bad.channels, attrs, bad.errors, bad.now)
        with pytest.raises(CatalogError):  # the third batch fails: the first two are rolled back with it
            catalog.upsert_stream(iter([make_batch(paths_of(3, "/e")), make_batch(a[3:6], "h3"), bad]))
        after = self.snapshot(catalog)
        for name in before:
            assert after[name].equals(before[name]), name
