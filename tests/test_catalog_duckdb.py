"""The DuckDB catalog: the shared contract on a temporary file, plus what only DuckDB has."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import duckdb
import pyarrow as pa
import pytest

from catalog_contract import T0, CatalogContract, make_batch, paths_of
from exr_inspector.catalog.base import CatalogError, open_catalog
from exr_inspector.catalog.duckdb import (
    FILES_STORED,
    LIST_COLUMNS,
    STORED,
    DuckDBCatalog,
    ddl_for,
    sql_type,
    stored_schema,
)
from exr_inspector.catalog.schema import EMBEDDING_DIM, SCHEMA_VERSION, TABLES


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "catalog.duckdb"


class TestDuckDB(CatalogContract):
    @pytest.fixture
    def catalog(self, db_path):
        with DuckDBCatalog(str(db_path)) as cat:
            yield cat


class _FailAfterDelete:
    """Connection proxy that raises right after the upsert deleted the changed files' rows."""

    def __init__(self, con):
        self.con = con

    def execute(self, sql, *args):
        out = self.con.execute(sql, *args)
        if sql.lstrip().startswith("DELETE FROM file_rows"):
            raise RuntimeError("injected failure after DELETE")
        return out

    def __getattr__(self, name):
        return getattr(self.con, name)


class _FailingCatalog(DuckDBCatalog):
    def _merge(self, con, batch, register):
        return super()._merge(_FailAfterDelete(con), batch, register)


def test_rollback_after_delete_step(db_path):
    a, b = paths_of(2)
    with DuckDBCatalog(str(db_path)) as cat:
        cat.upsert(make_batch([a, b], n_parts=3))
    with _FailingCatalog(str(db_path)) as cat:
        with pytest.raises(CatalogError, match="rolled back") as exc:
            cat.upsert(make_batch([a, b], ["h2", "h2"], n_parts=1, n_errors=1))
        assert isinstance(exc.value.__cause__, RuntimeError)
        assert cat.query("SELECT DISTINCT header_hash FROM files").column(0).to_pylist() == ["h1"]
        assert (cat.count("files"), cat.count("parts"), cat.count("crawl_errors")) == (2, 6, 0)
        # No leftovers: views and the temp key table are gone.
        assert cat.query("SELECT count(*) FROM duckdb_tables() WHERE temporary").column(0)[0].as_py() == 0
    with DuckDBCatalog(str(db_path)) as cat:  # and the file on disk agrees
        assert (cat.count("files"), cat.count("parts")) == (2, 6)


def stored_children(cat: DuckDBCatalog, table: str) -> int:
    """Rows of a stored table; in a list table (attribute_rows, channel_rows), the keys in its lists."""
    lists = {STORED[name]: column for name, column in LIST_COLUMNS.items()}
    what = f"coalesce(sum(len({lists[table]})), 0)" if table in lists else "count(*)"
    return cat.query(f"SELECT {what} FROM {table}").column(0)[0].as_py()


def test_ddl_derived_from_schema(tmp_path):
    with DuckDBCatalog(str(tmp_path / "c.duckdb")) as cat:
        for name, schema in TABLES.items():
            desc = cat.query(f"DESCRIBE {name}").to_pylist()
            assert [r["column_name"] for r in desc] == schema.names
            assert [r["column_type"] for r in desc] == [sql_type(f.type).replace("\"", "") for f in schema]
            if name in STORED or name == "files":  # a view over the table that stores it (with the constraints)
                name, schema = (STORED[name], stored_schema(name)) if name in STORED else ("file_rows", FILES_STORED)
                desc = cat.query(f"DESCRIBE {name}").to_pylist()
                assert [r["column_name"] for r in desc] == schema.names
            assert [r["null"] == "YES" for r in desc] == [f.nullable for f in schema]
        types = {r["column_name"]: r["column_type"] for r in cat.query("DESCRIBE files").to_pylist()}
        assert types["metadata_embedding"] == f"FLOAT[{EMBEDDING_DIM}]"
        assert types["mtime"] == "TIMESTAMP"
        chan = {r["column_name"]: r["column_type"] for r in cat.query("DESCRIBE channels").to_pylist()}
        assert chan["channel_fingerprint"] == "FLOAT[128]"
        assert dict(cat.query("DESCRIBE crawl_runs").select(["column_name", "column_type"]).to_pylist()[1].items()) == {
            "column_name": "roots", "column_type": "VARCHAR[]"}
        indexes = set(cat.query("SELECT index_name FROM duckdb_indexes()").column(0).to_pylist())
        assert "file_rows_file_path_normalized_idx" in indexes
    assert '"data_window" STRUCT("min_x" INTEGER' in ddl_for("parts", TABLES["parts"])
    assert '"file_id" VARCHAR NOT NULL' in ddl_for("parts", TABLES["parts"])
    with pytest.raises(TypeError):
        sql_type(pa.large_string())


def test_value_json_is_stored_with_zstd_and_reads_back(db_path):
    """A physical choice behind the schema: value_json compresses with ZSTD; queries see the same values."""
    assert '"value_json" VARCHAR USING COMPRESSION zstd' in ddl_for("attribute_values", TABLES["attributes"])
    paths = paths_of(3000)
    batch = make_batch(paths, n_parts=1, n_channels=2, n_attrs=6, n_errors=0)
    with DuckDBCatalog(str(db_path)) as cat:
        cat.upsert(batch)
    with DuckDBCatalog(str(db_path), read_only=True) as cat:  # closing checkpointed the rows
        comp = set(cat.query("SELECT compression FROM pragma_storage_info('attribute_values') "
                             "WHERE column_name = 'value_json'").column(0).to_pylist())
        assert "ZSTD" in comp
        got = cat.query("SELECT file_path, attr_name, value_json FROM attributes ORDER BY ALL")
    want = batch.attributes.select(["file_path", "attr_name", "value_json"]).sort_by(
        [("file_path", "ascending"), ("attr_name", "ascending"), ("value_json", "ascending")])
    assert got.to_pylist() == want.to_pylist()


def test_path_hash_is_xxh64_of_the_normalized_path(db_path):
    """The stored path_hash is XXH64 (seed 0) of the path's UTF-8 bytes, as the xxhash package
    computes it (the embedding kernel, over the Arrow buffers of a whole batch)."""
    import xxhash

    paths = paths_of(40, "/show/séq/shot_漢") + ["/a/🎞.exr", "/" + "x" * 300 + ".exr"]
    with DuckDBCatalog(str(db_path)) as cat:
        cat.upsert(make_batch(paths))
        got = dict(cat.con.execute("SELECT file_path_normalized, path_hash FROM file_rows").fetchall())
    assert got == {p: int.from_bytes(xxhash.xxh64_digest(p.encode()), "big", signed=True) for p in paths}


def test_open_catalog_urls(tmp_path):
    for url in (str(tmp_path / "a.duckdb"), f"duckdb://{tmp_path / 'b.duckdb'}"):
        with open_catalog(url) as cat:
            assert isinstance(cat, DuckDBCatalog) and cat.url == url
            assert cat.count("files") == 0
    with DuckDBCatalog(":memory:") as cat:
        assert cat.upsert(make_batch(paths_of(2))).inserted == 2


def test_locked_by_another_process(db_path):
    DuckDBCatalog(str(db_path)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
         str(db_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(CatalogError, match=rf"locked by another process \(PID {holder.pid}\)") as exc:
            DuckDBCatalog(str(db_path))
        assert str(db_path) in str(exc.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    DuckDBCatalog(str(db_path)).close()  # free again once the holder is gone


def test_unopenable_paths(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "c.duckdb"
    with pytest.raises(CatalogError, match="does not exist") as exc:
        DuckDBCatalog(str(missing))
    assert str(missing) in str(exc.value)
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database at all" * 1000)
    with pytest.raises(CatalogError, match="not a DuckDB database"):
        DuckDBCatalog(str(junk))
    with pytest.raises(CatalogError, match="directory"):
        DuckDBCatalog(str(tmp_path))
    with pytest.raises(CatalogError, match="read-only"):
        DuckDBCatalog(str(tmp_path / "absent.duckdb"), read_only=True)


def test_newer_schema_version_refused(db_path):
    DuckDBCatalog(str(db_path)).close()
    con = duckdb.connect(str(db_path))
    con.execute("UPDATE catalog_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    with pytest.raises(CatalogError, match="newer"):
        DuckDBCatalog(str(db_path))
    with pytest.raises(CatalogError, match="newer"):
        DuckDBCatalog(str(db_path), read_only=True)


def write_v2_catalog(path, batch) -> None:
    """A catalog as exr-inspector wrote it at schema version 2: every table whole, no views."""
    con = duckdb.connect(str(path))
    for name, schema in TABLES.items():
        con.execute(ddl_for(name, schema))
    con.execute("CREATE INDEX files_file_path_normalized_idx ON files (file_path_normalized)")
    for name, table in batch.tables().items():
        con.register("t", table)
        con.execute(f"INSERT INTO {name} SELECT * FROM t")
        con.unregister("t")
    con.execute("INSERT INTO catalog_meta VALUES ('schema_version', '2')")
    con.close()


def test_version_2_catalog_moves_to_stored_layout(db_path):
    """Child tables stored whole become views over their stored tables; every row reads back the same."""
    batch = make_batch(paths_of(3), n_parts=2, n_channels=4, n_errors=1)
    write_v2_catalog(db_path, batch)
    with pytest.raises(CatalogError, match="upgrade it"):
        DuckDBCatalog(str(db_path), read_only=True)
    with DuckDBCatalog(str(db_path)) as cat:
        assert cat.query("SELECT value FROM catalog_meta").to_pylist() == [{"value": str(SCHEMA_VERSION)}]
        for name in ("parts", "channels", "attributes", "files", "crawl_errors"):
            got = cat.scan(name)
            want = batch.tables()[name]
            order = [(c, "ascending") for c in ("file_id", "part_index", "channel_name", "attr_name", "path")
                     if c in want.column_names]
            assert got.sort_by(order).equals(want.sort_by(order)), name
        kinds = {r["table_name"]: r["table_type"] for r in cat.query(
            "SELECT table_name, table_type FROM information_schema.tables").to_pylist()}
        assert kinds["channels"] == "VIEW" and kinds["channel_rows"] == "BASE TABLE"
        distinct = cat.query("SELECT count(DISTINCT channel_fingerprint) FROM channels").column(0)[0].as_py()
        assert distinct == cat.query(
            "SELECT count(*) FROM channel_fingerprints").column(0)[0].as_py()
        assert cat.upsert(make_batch(paths_of(4), ["h2"] * 4)).replaced == 3


def make_older(db_path, version: int, statements: list[str]) -> None:
    """Run ``statements`` on the catalog file to make it what ``version`` stored, record that
    version, and check that a read-only open refuses it until it is upgraded."""
    con = duckdb.connect(str(db_path))
    for sql in statements:
        con.execute(sql)
    con.execute("UPDATE catalog_meta SET value = ?", [str(version)])
    con.close()
    with pytest.raises(CatalogError, match="upgrade it"):
        DuckDBCatalog(str(db_path), read_only=True)


def test_version_3_catalog_gathers_child_rows_into_lists(db_path):
    """Version 3 stored a row per attribute and channel: opened for writing, each part's keys
    become one list row, in their order, and every view reads back the same."""
    import exr_inspector.catalog.duckdb as duck

    batch = make_batch(paths_of(4), n_parts=2, n_channels=3, n_attrs=5)
    with DuckDBCatalog(str(db_path)) as cat:
        cat.upsert(batch)
        before = {name: cat.scan(name) for name in ("files", "parts", "channels", "attributes")}
    statements = []
    for name, column in LIST_COLUMNS.items():
        table, key = STORED[name], "value_key" if name == "attributes" else "channel_key"
        statements += [f"CREATE TABLE {table}_v3 AS SELECT file_key, part_index, unnest({column}) AS {key} "
                       f"FROM {table} ORDER BY file_key, part_index",
                       f"DROP VIEW {name}", f"DROP TABLE {table}", f"ALTER TABLE {table}_v3 RENAME TO {table}",
                       duck.view_for(name).replace(duck._unnested(name), f'"{table}"')]  # its view over the rows
    make_older(db_path, 3, [*statements, "DROP INDEX file_rows_file_path_normalized_idx",  # and no path_hash
                            "ALTER TABLE file_rows DROP COLUMN path_hash",
                            "CREATE INDEX file_rows_file_path_normalized_idx ON file_rows (file_path_normalized)"])
    with DuckDBCatalog(str(db_path)) as cat:
        assert cat.query("SELECT value FROM catalog_meta").to_pylist() == [{"value": str(SCHEMA_VERSION)}]
        for name, want in before.items():
            assert cat.scan(name).equals(want), name  # same rows, same order within each part
        assert cat.query("SELECT count(*) FROM attribute_rows").column(0)[0].as_py() == 4 * 2
        assert sorted(cat.lookup(paths_of(5))["file_path_normalized"].to_pylist()) == paths_of(4)  # by path_hash
        assert cat.upsert(make_batch(paths_of(5), ["h2"] * 5)).replaced == 4


def test_version_1_catalog_is_upgraded_in_place(db_path):
    write_v2_catalog(db_path, make_batch(paths_of(2)))
    make_older(db_path, 1, ["DROP INDEX files_file_path_normalized_idx", "ALTER TABLE files DROP COLUMN renamed_from",
                            "ALTER TABLE crawl_runs DROP COLUMN host", "ALTER TABLE crawl_runs DROP COLUMN pid",
                            "CREATE INDEX files_file_path_normalized_idx ON files (file_path_normalized)"])
    with DuckDBCatalog(str(db_path)) as cat:
        assert cat.query("SELECT value FROM catalog_meta").to_pylist() == [{"value": str(SCHEMA_VERSION)}]
        assert cat.scan("files", ["renamed_from"])["renamed_from"].to_pylist() == [None, None]
        cat.start_run("r", ["/x"], T0)
        assert cat.runs()["host"][0].as_py()
        assert cat.upsert(make_batch(paths_of(3))).inserted == 1


def test_schema_version_recorded_once(db_path):
    for _ in range(3):
        with DuckDBCatalog(str(db_path)) as cat:
            cat.ensure_schema()
    with DuckDBCatalog(str(db_path), read_only=True) as cat:
        assert cat.query("SELECT * FROM catalog_meta").to_pylist() == [
            {"key": "schema_version", "value": str(SCHEMA_VERSION)}]


def test_read_only(db_path):
    with DuckDBCatalog(str(db_path)) as cat:
        cat.upsert(make_batch(paths_of(2)))
    with DuckDBCatalog(str(db_path), read_only=True) as cat:
        assert cat.lookup(paths_of(3)).num_rows == 2
        with pytest.raises(CatalogError, match="read-only"):
            cat.upsert(make_batch(paths_of(3)))


def test_query_and_documented_sql(db_path):
    with DuckDBCatalog(str(db_path)) as cat:
        batch = make_batch(paths_of(4), embedding_seed=2)
        cat.upsert(batch)
        assert cat.query("SELECT count(*) AS n FROM files").to_pylist() == [{"n": 4}]
        q = batch.files["metadata_embedding"][3].values.to_numpy().tolist()
        nearest = cat.query(
            f"SELECT file_path FROM files ORDER BY array_cosine_distance(metadata_embedding, ?::FLOAT[{EMBEDDING_DIM}]) "
            "LIMIT 1", [q])
        assert nearest.column(0)[0].as_py() == paths_of(4)[3]
        by_comp = cat.query("SELECT compression, count(*) AS n FROM parts GROUP BY 1 ORDER BY 1").to_pylist()
        assert by_comp == [{"compression": "PIZ", "n": 4}, {"compression": "ZIP", "n": 4}]
        with pytest.raises(CatalogError, match="query"):
            cat.query("SELECT * FROM no_such_table")


def test_aware_now_stored_as_naive_utc(db_path):
    with DuckDBCatalog(str(db_path)) as cat:
        cat.upsert(make_batch(paths_of(1)))
        batch = make_batch(paths_of(1))
        batch.now = dt.datetime(2024, 1, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        cat.upsert(batch)
        assert cat.query("SELECT last_inspected FROM files").column(0)[0].as_py() == T0


def test_closed_catalog(db_path):
    cat = DuckDBCatalog(str(db_path))
    cat.close()
    cat.close()
    with pytest.raises(CatalogError, match="closed"):
        cat.count("files")


def test_20k_file_batch(db_path):
    paths = paths_of(20_000)
    batch = make_batch(paths, n_parts=1, n_channels=4, n_attrs=8, n_errors=10)
    with DuckDBCatalog(str(db_path)) as cat:
        t = time.perf_counter()
        stats = cat.upsert(batch)
        first = time.perf_counter() - t
        assert (stats.inserted, stats.errors) == (20_000, 10)
        assert (cat.count("files"), cat.count("parts"), cat.count("channels"), cat.count("attributes")) == (
            20_000, 20_000, 80_000, 160_000)
        t = time.perf_counter()
        assert cat.upsert(batch).unchanged == 20_000
        again = time.perf_counter() - t
        assert cat.lookup(paths).num_rows == 20_000
    print(f"20k files: first upsert {first:.2f}s, unchanged re-upsert {again:.2f}s")


def test_stored_layout_keeps_each_value_once_and_prune_collects_orphans(db_path):
    """Attribute values and fingerprints are stored once per batch / catalog, read back whole
    through the views, and prune drops the ones no row uses any more."""
    paths = paths_of(5)

    def stored(cat):
        return {t: stored_children(cat, t) for t in ("attribute_rows", "attribute_values", "channel_rows",
                                                     "channel_defs", "channel_fingerprints", "file_embeddings")}

    with DuckDBCatalog(str(db_path)) as cat:
        batch = make_batch(paths, n_parts=2, n_channels=4, n_attrs=6)
        cat.upsert(batch)
        got = stored(cat)
        assert got["attribute_rows"] == 5 * 2 * 6 and got["attribute_values"] == 6  # one per distinct value
        # one stored row per part, its keys a list
        assert cat.query("SELECT count(*) FROM attribute_rows").column(0)[0].as_py() == 5 * 2
        want = batch.attributes.sort_by([("file_id", "ascending"), ("part_index", "ascending"),
                                         ("attr_name", "ascending")])
        assert cat.scan("attributes").sort_by([("file_id", "ascending"), ("part_index", "ascending"),
                                               ("attr_name", "ascending")]).equals(want)
        # New headers for every file: the old values and fingerprints are orphans until prune.
        cat.upsert(make_batch(paths, ["h2"] * 5, n_parts=2, n_channels=4, n_attrs=6, embedding_seed=7))
        assert stored(cat)["attribute_values"] == 12 and stored(cat)["channel_fingerprints"] == 2 * got[
            "channel_fingerprints"] and stored(cat)["file_embeddings"] == 2 * got["file_embeddings"] == 10
        assert cat.prune(T0 - dt.timedelta(days=1)) == 0  # no file is missing: only orphans go
        after = stored(cat)
        assert after["attribute_values"] == 6 and after["channel_fingerprints"] == got["channel_fingerprints"]
        assert after["file_embeddings"] == 5 and cat.get_embedding(paths[0]) is not None
        assert after["channel_defs"] == got["channel_defs"] == got["channel_fingerprints"] == 40
        assert cat.search(cat.get_embedding(paths[0]), k=1)["file_path"].to_pylist() == [paths[0]]
        assert after["attribute_rows"] == got["attribute_rows"] and cat.count("attributes") == 60


@pytest.mark.parametrize("later", [dt.timedelta(0), dt.timedelta(hours=1)])
def test_upsert_stream_merges_groups_and_keeps_order_for_repeats(db_path, monkeypatch, later):
    """Batches of one transaction are merged a group at a time; a path repeated inside a group
    is merged batch by batch, so the later header wins, as with one merge per batch."""
    import exr_inspector.catalog.duckdb as duck

    monkeypatch.setattr(duck, "MERGE_FILES", 5)
    a = paths_of(9)
    stream = [make_batch(a[0:3]), make_batch(a[3:6]), make_batch(a[6:9], n_errors=1),
              make_batch(a[0:2], ["h2", "h2"], now=T0 + later)]
    with DuckDBCatalog(str(db_path)) as cat:
        stats = cat.upsert_stream(iter(stream))
        assert (stats.inserted, stats.replaced, stats.unchanged, stats.errors) == (9, 2, 0, 1)
        hashes = {r["file_path_normalized"]: r["header_hash"] for r in cat.query(
            "SELECT file_path_normalized, header_hash FROM files").to_pylist()}
        assert hashes == {p: ("h2" if p in a[:2] else "h1") for p in a}
        assert cat.count("parts") == 9 * 2 and cat.count("attributes") == 9 * 2 * 4
        keys = cat.query("SELECT file_key FROM file_rows ORDER BY file_key").column(0).to_pylist()
        assert len(set(keys)) == 9
    # the same stream in one merge per batch gives the same catalog, whether the merges are
    # cut by files or by bytes (huge headers)
    for name_, files, nbytes in (("one.duckdb", 1, duck.MERGE_BYTES), ("bytes.duckdb", 10**6, 1)):
        with DuckDBCatalog(str(db_path.with_name(name_))) as one:
            monkeypatch.setattr(duck, "MERGE_FILES", files)
            monkeypatch.setattr(duck, "MERGE_BYTES", nbytes)
            one.upsert_stream(iter(stream))
            with DuckDBCatalog(str(db_path)) as cat:
                for name in ("files", "parts", "channels", "attributes", "crawl_errors"):
                    cols = [c for c in TABLES[name].names if c not in ("metadata_embedding",)]
                    order = [(c, "ascending") for c in ("file_path", "part_index", "channel_name", "attr_name",
                                                        "path") if c in cols]
                    assert cat.scan(name, cols).sort_by(order).equals(one.scan(name, cols).sort_by(order)), name


def test_writer_appends_small_row_groups_and_one_writer_per_process(db_path) -> None:
    """A writer attaches the file with ROW_GROUP_ROWS-row groups (appends go straight to the
    file, compressed, not through the WAL and a checkpoint at COMMIT); the catalog reads the
    same; a second open of the file in this process while it is open is a clear CatalogError."""
    import exr_inspector.catalog.duckdb as duck

    paths = paths_of(duck.ROW_GROUP_ROWS * 2)  # x 2 parts: 4 row groups of part rows
    with DuckDBCatalog(str(db_path)) as cat:
        cat.upsert(make_batch(paths))
        groups = cat.query("SELECT row_group_id, sum(count) AS n FROM pragma_storage_info('part_rows') "
                           "WHERE column_path = '[0]' GROUP BY ALL").to_pylist()
        assert len(groups) >= 4 and max(g["n"] for g in groups) <= duck.ROW_GROUP_ROWS
        assert cat.count("attributes") == len(paths) * 2 * 4
        with pytest.raises(CatalogError, match="already open for writing in this process"):
            DuckDBCatalog(str(db_path), read_only=True)
    with DuckDBCatalog(str(db_path), read_only=True) as ro:
        assert ro.count("attributes") == len(paths) * 2 * 4 and ro.count("files") == len(paths)


def test_replaced_headers_leave_orphans_until_collected(db_path, monkeypatch) -> None:
    """A changed header's old child rows stay in the stored tables, invisible (the views join
    them to their file row, and the new header has a new file_key), counted in catalog_meta;
    once the orphaned files pass ORPHAN_FRACTION of the files (ORPHAN_MIN at least) the upsert
    collects them all, and so does prune."""
    import exr_inspector.catalog.duckdb as duck

    monkeypatch.setattr(duck, "ORPHAN_MIN", 6)
    monkeypatch.setattr(duck, "ORPHAN_FRACTION", 0.5)
    a = paths_of(10)

    def stored(cat) -> int:
        return stored_children(cat, "attribute_rows")

    def orphans(cat) -> int:
        rows = cat.query("SELECT value FROM catalog_meta WHERE key = 'orphan_files'").to_pylist()
        return int(rows[0]["value"]) if rows else 0

    with DuckDBCatalog(str(db_path)) as cat:
        cat.upsert(make_batch(a))
        live = 10 * 2 * 4
        cat.upsert(make_batch(a[:3], "h2", n_attrs=5))  # 3 changed: orphans kept, not visible
        assert cat.count("attributes") == live - 3 * 8 + 3 * 10 and stored(cat) == live + 3 * 10
        assert orphans(cat) == 3
        assert {r["header_hash"] for r in cat.query("SELECT header_hash FROM attributes a JOIN files f "
                                                     "USING (file_id)").to_pylist()} == {"h1", "h2"}
        cat.upsert(make_batch(a[3:5], "h2", n_attrs=5))  # 5 orphaned files: < max(6, 0.5 * 10)
        assert orphans(cat) == 5 and stored(cat) > cat.count("attributes")
        cat.upsert(make_batch(a[5:6], "h2", n_attrs=5))  # 6: collected, in that upsert's transaction
        assert orphans(cat) == 0 and stored(cat) == cat.count("attributes") == 6 * 10 + 4 * 8
        for name in ("parts", "channels"):
            assert stored_children(cat, duck.STORED[name]) == cat.count(name)
        cat.upsert(make_batch(a[6:8], "h3"))
        assert orphans(cat) == 2 and stored(cat) > cat.count("attributes")
        cat.prune(T0 - dt.timedelta(days=1))  # nothing missing, but prune collects the orphans
        assert orphans(cat) == 0 and stored(cat) == cat.count("attributes")
        cat.upsert(make_batch(["/show/seq/moved/render.00000.exr"]))  # a rename orphans the old rows too
        assert cat.apply_renames([a[9]], ["/show/seq/moved/render.00000.exr"]) == 1
        assert orphans(cat) == 1 and stored(cat) == cat.count("attributes") + 8


def test_path_hash_collisions_change_nothing(db_path, monkeypatch) -> None:
    """Rows are found by path_hash, then matched by path: with every path hashing alike,
    lookups, upserts, touch and mark_missing do exactly what they do with real hashes."""
    import numpy as np

    import exr_inspector.catalog.duckdb as duck

    a = paths_of(12)
    results = []
    for collide in (False, True):
        if collide:
            monkeypatch.setattr(duck, "hash_strings", lambda paths: np.zeros(len(paths), np.uint64))
        with DuckDBCatalog(str(db_path.with_name(f"c{collide}.duckdb"))) as cat:
            cat.upsert(make_batch(a[:8]))
            stats = cat.upsert(make_batch(a[4:12], ["h1"] * 2 + ["h2"] * 6))
            found = cat.lookup([a[0], a[11], "/not/there.exr"])["file_path_normalized"].to_pylist()
            touched = cat.touch(a[:3] + ["/not/there.exr"], T0 + dt.timedelta(hours=1))
            missing = cat.mark_missing(a[10:], T0 + dt.timedelta(hours=2))
            rows = cat.query("SELECT file_path_normalized, header_hash, inspection_count, missing_since IS NULL AS here "
                             "FROM files ORDER BY 1").to_pylist()
            results.append(((stats.inserted, stats.replaced, stats.unchanged), sorted(found), touched, missing, rows,
                            cat.count("attributes"), cat.count("channels")))
    assert results[0] == results[1]
    assert results[0][0] == (4, 2, 2) and results[0][2:4] == (3, 2) and results[0][5] == 12 * 2 * 4
