"""The embedded catalog: one DuckDB file, written by a single writer.

Tables are created from the Arrow schemas in ``schema.TABLES`` (``ddl_for``), so
there is no hand-written DDL to drift. Batches go in zero-copy: Arrow tables are
registered or read as relations and merged with set-based SQL inside one
transaction, so the cost per batch is a handful of statements, never per row.

Physical layout: ``files``, ``parts``, ``channels`` and ``attributes`` are views,
in exactly their Arrow schemas, over tables that store what a keyed batch carries:
child rows keyed by an integer ``file_key`` (no repeated id or path), attribute
names and values and channel definitions once per batch (``SHARED_TABLES``), each
channel fingerprint and file embedding once. On the bench tree that cut DuckDB's
work from ~180 to ~40 us a file and the catalog to a quarter; queries see the
catalog tables unchanged.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..columnar import combined
from ..embed.kernels import hash_strings
from .base import LOOKUP_COLUMNS, LOOKUP_SCHEMA, Catalog, CatalogError, IngestBatch, UpsertStats, naive_utc, run_origin
from .schema import (
    EMBEDDING_DIM,
    FILES,
    FINGERPRINTS,
    KEYED,
    SCHEMA_VERSION,
    SHARED,
    SHARED_SCHEMAS,
    TABLES,
    key_vectors,
)

# DuckDB runs the upsert's set-based statements as hash joins over sequential
# scans and never probes an ART index for them; child-table indexes only slowed
# ingest (measured: +40% per insert, 3x per replace at 200k files). The one on
# the files key serves point lookups by path (get_embedding, ad-hoc queries).
# Non-unique: uniqueness is the upsert's job, and a unique index can reject
# the delete-then-insert of a changed file inside one transaction.
INDEXES = {"file_rows": ("file_path_normalized",)}

SEARCH_SCHEMA = pa.schema([FILES.field("file_path"), FILES.field("file_id"), pa.field("score", pa.float64())])

_SCALARS = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.timestamp("us"): "TIMESTAMP",
}


def _q(name: str) -> str:
    """Quote an identifier (names come from our schemas, but quoting costs nothing)."""
    return '"' + name.replace('"', '""') + '"'


def sql_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type; raises TypeError for types the catalog does not use."""
    if t in _SCALARS:
        return _SCALARS[t]
    if pa.types.is_fixed_size_list(t):
        return f"{sql_type(t.value_type)}[{t.list_size}]"
    if pa.types.is_list(t):
        return f"{sql_type(t.value_type)}[]"
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f"{_q(f.name)} {sql_type(f.type)}" for f in t) + ")"
    raise TypeError(f"no DuckDB mapping for Arrow type {t}")


# Columns stored with ZSTD instead of DuckDB's choice (dictionary/FSST). value_json (per-frame
# matrices and timecodes as JSON) then writes 20% faster and 13% smaller on the bench tree.
# (Paths would be 23% smaller, but every lookup reads them: re-crawls measured no faster.)
# A physical detail only: catalogs created before keep their columns as they are.
ZSTD_COLUMNS = frozenset({"value_json"})


def ddl_for(name: str, schema: pa.Schema) -> str:
    """CREATE TABLE IF NOT EXISTS for one catalog table, derived from its Arrow schema."""
    cols = ",\n  ".join(f"{_q(f.name)} {sql_type(f.type)}{' USING COMPRESSION zstd' if f.name in ZSTD_COLUMNS else ''}"
                         f"{'' if f.nullable else ' NOT NULL'}" for f in schema)
    return f"CREATE TABLE IF NOT EXISTS {_q(name)} (\n  {cols}\n)"



MERGE_FILES = 4096  # files per merge inside an upsert_stream transaction (see upsert_stream)
MERGE_BYTES = 128 << 20  # or this much Arrow data (huge headers): what one merge holds in memory
# A replaced header's child rows are left orphaned, and collected in one pass once the
# orphaned files reach this fraction of the catalog's files (and at least ORPHAN_MIN).
ORPHAN_FRACTION = 0.1
ORPHAN_MIN = 1_000

# Child table -> the table that stores it (the catalog table is a view over it).
STORED = {"parts": "part_rows", "channels": "channel_rows", "attributes": "attribute_rows"}
FINGERPRINT_TABLE = "channel_fingerprints"
# files is a view too: file_rows keeps an embedding_key into file_embeddings (every frame of a
# sequence has the same tokens, so the same vector: the bench tree has 40 for 20,000 files).
FILES_TABLE = "file_rows"
EMBEDDINGS_TABLE = "file_embeddings"
EMBEDDING_KEY = pa.field("embedding_key", pa.int64())
EMBEDDINGS_SCHEMA = pa.schema([pa.field("embedding_key", pa.int64(), nullable=False),
                               pa.field("metadata_embedding", FILES.field("metadata_embedding").type, nullable=False)])
# Child rows name their file by file_key, a number file_rows assigns (a fresh one for each new
# or changed header): an 8-byte integer instead of a 32-character file_id on every child row.
FILE_KEY = pa.field("file_key", pa.int64(), nullable=False)
# XXH64 of file_path_normalized (int64 bit pattern): a lookup finds its candidate rows by
# this 8-byte column, then reads only those rows' paths (see _candidates).
PATH_HASH = pa.field("path_hash", pa.int64(), nullable=False)
FILES_STORED = pa.schema([EMBEDDING_KEY if f.name == "metadata_embedding" else f for f in FILES]
                         + [FILE_KEY, PATH_HASH])


# Attributes and channels keep a key into a table of their distinct values (schema.SHARED):
# child table -> (stored table of distinct rows, its key column).
SHARED_TABLES = {"attributes": ("attribute_values", pa.field("value_key", pa.int64(), nullable=False)),
                 "channels": ("channel_defs", pa.field("channel_key", pa.int64(), nullable=False))}


def shared_schema(name: str) -> pa.Schema:
    """The stored table of child table ``name``'s distinct values: its key, then the columns."""
    table, key = SHARED_TABLES[name]
    return pa.schema([key, *SHARED_SCHEMAS[table]])


# A part's attributes (channels) are one stored row: the list of their keys, in order.
# (Schema version 3 stored a row per attribute: 75 rows a file instead of ~3, and the
# writer spent ~30% of its time appending and compressing them.)
LIST_COLUMNS = {"attributes": "value_keys", "channels": "channel_keys"}


def row_schema(name: str) -> pa.Schema:
    """A child row as a batch carries it (``schema.KEYED``), with the stored keys for the
    batch's indexes: file_key for file_index, the shared table's key for its index. What
    schema version 3 stored, one row per child."""
    fields = list(KEYED[name])
    fields[0] = FILE_KEY
    if name in SHARED_TABLES:
        fields[-1] = SHARED_TABLES[name][1]
    return pa.schema(fields)


def stored_schema(name: str) -> pa.Schema:
    """What a child table stores: ``row_schema``, with the keys of a part's attributes and
    channels gathered into one list per part."""
    rows = row_schema(name)
    if name not in LIST_COLUMNS:
        return rows
    keys = pa.field(LIST_COLUMNS[name], pa.list_(pa.field("item", pa.int64(), nullable=False)), nullable=False)
    return pa.schema([*rows][:-1] + [keys])


def _unnested(name: str) -> str:
    """Child table ``name``'s stored rows, a row per child again (the list in its order)."""
    table = _q(STORED[name])
    if name not in LIST_COLUMNS:
        return table
    cols = ", ".join(_q(c) for c in row_schema(name).names[:-1])
    return f"(SELECT {cols}, unnest({LIST_COLUMNS[name]}) AS {SHARED_TABLES[name][1].name} FROM {table})"


def files_view() -> str:
    cols = ", ".join("e.metadata_embedding" if f.name == "metadata_embedding" else f"r.{_q(f.name)}" for f in FILES)
    return (f"CREATE OR REPLACE VIEW files AS SELECT {cols} FROM {FILES_TABLE} r "
            f"LEFT JOIN {EMBEDDINGS_TABLE} e ON e.embedding_key = r.embedding_key")


def view_for(name: str) -> str:
    """The view presenting child table ``name`` in its Arrow schema (column order included)."""
    shared = SHARED[name][0] if name in SHARED else ()
    cols = []
    for f in TABLES[name]:
        if f.name in ("file_id", "file_path"):
            cols.append(f"f.{f.name}")
        elif f.name == "channel_fingerprint":
            cols.append("fp.channel_fingerprint")
        elif f.name in shared:
            cols.append(f"v.{_q(f.name)}")
        else:
            cols.append(f"r.{_q(f.name)}")
    joins = f"JOIN {FILES_TABLE} f ON f.file_key = r.file_key"
    if name in SHARED_TABLES:
        table, key = SHARED_TABLES[name]
        joins += f" JOIN {table} v ON v.{key.name} = r.{key.name}"
    if name == "channels":
        joins += f" LEFT JOIN {FINGERPRINT_TABLE} fp ON fp.fingerprint_key = v.fingerprint_key"
    return f"CREATE OR REPLACE VIEW {_q(name)} AS SELECT {', '.join(cols)} FROM {_unnested(name)} r {joins}"


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The column names ``table`` has now (an upgrade adds what an older version lacked)."""
    return {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' "
                                      "AND table_name = ?", [table]).fetchall()}


@contextmanager
def _candidates(con: duckdb.DuckDBPyConnection, source: str, hashes: str) -> Iterator[int]:
    """TEMP TABLE _candidates while the block runs (yields how many): the file_key of every row
    whose path_hash is one of ``source``'s ``hashes``. It reads the 8-byte hash column only;
    the statements that then join file_rows on these keys read the rows' other columns only
    near them (DuckDB pushes the keys' range into the scan, and a crawl's rows lie in
    file_key order): a 16,384-path lookup against 2 million files took 22 ms instead of 160.
    Hash collisions are harmless: the paths are compared after."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _candidates AS SELECT file_key FROM {FILES_TABLE} "
                f"WHERE path_hash IN (SELECT {hashes} FROM {source})")
    try:
        yield _scalar(con, "SELECT count(*) FROM _candidates")
    finally:
        with suppress(duckdb.Error):  # in a failed transaction, its rollback drops it
            con.execute("DROP TABLE IF EXISTS _candidates")


def _vector_keys(con: duckdb.DuckDBPyConnection, table: str, column: str, schema: pa.Schema) -> pa.Table:
    """(key, vector) of each distinct vector of ``table.column``, keyed as a crawl keys them."""
    _, vectors, keys = key_vectors(con.sql(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL")
                                   .to_arrow_table()[column])
    return pa.Table.from_arrays([pa.array(keys), vectors], schema=schema)


def _per_part(cols: list) -> list:
    """(file_key, part_index, key) rows -> one (file_key, part_index, [keys]) row per part,
    the keys in row order. Readers emit a part's rows together; other batches are sorted
    first (stably, so each part keeps its order)."""
    file_key = combined(cols[0]).to_numpy().astype(np.int64, copy=False)
    part = combined(cols[1]).to_numpy().astype(np.int64, copy=False)
    keys = combined(cols[2])
    if len(file_key) > 1 and ((file_key[1:] < file_key[:-1]) | ((file_key[1:] == file_key[:-1])
                                                                & (part[1:] < part[:-1]))).any():
        order = np.lexsort((part, file_key))
        file_key, part, keys = file_key[order], part[order], keys.take(pa.array(order))
    starts = np.flatnonzero(np.r_[True, (file_key[1:] != file_key[:-1]) | (part[1:] != part[:-1])])
    offsets = pa.array(np.r_[starts, len(file_key)].astype(np.int32))
    return [pa.array(file_key[starts]), pa.array(part[starts].astype(np.int32)),
            pa.ListArray.from_arrays(offsets, keys)]


def _disk_full(e: BaseException) -> bool:
    msg = str(e)
    return "No space left on device" in msg or "File too large" in msg or "disk is full" in msg.lower()


def _index_name(table: str) -> str:
    return _q(f"{table}_{'_'.join(INDEXES[table])}_idx")


def _unknown(column: str) -> bool:
    raise ValueError(f"unknown column {column!r}")


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence | None = None):
    """First value of a one-row statement; fetchall() so no open result blocks the connection."""
    return con.execute(sql, params).fetchall()[0][0]


# A writer attaches its catalog with row groups of this many rows instead of DuckDB's
# 122,880. A transaction appends each table whole row groups at a time straight to the
# file, compressed as it goes, instead of logging it to the WAL and compressing it all
# again in the checkpoint at COMMIT, which ran alone after the readers were done: the
# bench crawl takes 14% less time (1.28 -> 1.10 s for 20,000 files), on a catalog of the
# same size. Readers open the file as it is (the row group size is the writer's choice).
ROW_GROUP_ROWS = 16384
ALIAS = "exr_catalog"  # the attached catalog's name, which USE makes the default


def _connect(path: str, read_only: bool, config: dict) -> duckdb.DuckDBPyConnection:
    if read_only:
        return duckdb.connect(path, read_only=True, config=config)
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute(f"ATTACH '{path.replace(chr(39), chr(39) * 2)}' AS {ALIAS} (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        con.execute(f"USE {ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def _open_error(path: str, e: duckdb.Error) -> CatalogError:
    """Turn DuckDB's open failures into messages that say what to do."""
    msg = str(e)
    if "Could not set lock" in msg:
        pid = re.search(r"\(PID (\d+)\)", msg)
        who = f" (PID {pid.group(1)})" if pid else ""
        return CatalogError(f"catalog {path} is locked by another process{who}; wait for it to finish or stop it")
    if "Unique file handle conflict" in msg:
        return CatalogError(f"catalog {path} is already open for writing in this process; close it first")
    if "not a valid DuckDB database" in msg:
        return CatalogError(f"cannot open catalog {path}: the file exists but is not a DuckDB database")
    return CatalogError(f"cannot open catalog {path}: {msg}")


class DuckDBCatalog(Catalog):
    """A catalog in one DuckDB file (``PATH``, ``duckdb://PATH`` or ``:memory:``).

    Opening creates the file and its tables unless ``read_only``; a catalog
    written by a newer exr-inspector (higher ``schema_version``) is refused.
    """

    streaming = True
    # One row group of file rows per transaction: a table that fills whole row groups in a
    # transaction skips the WAL, and file_rows (the widest table) had stayed below one at
    # 10,000, so each commit logged it and every third paid for a checkpoint that compressed
    # it again. 100,000 files: commits 1.22 -> 0.83 s, crawl 4-11% faster (interleaved
    # runs), peak RSS the same; 20,000 files within noise.
    batch_files = ROW_GROUP_ROWS

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        path = url.removeprefix("duckdb://")
        self.path = path if path == ":memory:" else os.path.expanduser(path)
        self.read_only = read_only
        if self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise CatalogError(f"cannot open catalog {self.path}: directory {parent} does not exist")
            if Path(self.path).is_dir():
                raise CatalogError(f"cannot open catalog {self.path}: it is a directory")
        # A crawl's writer shares the machine with its reader processes: cap DuckDB's
        # buffer pool (default: 80% of RAM) so memory stays bounded; inserts spill past it.
        # 48 MB crawls as fast as 64 or 128 MB and takes ~20 MB off the writer's peak on a
        # 100,000-file crawl; 40 MB is ~2% slower, 32 MB ~11%. A writer gets one DuckDB
        # thread: the cores belong to the readers (1.1x faster than two). Read-only opens
        # (queries, similar) keep DuckDB's defaults unless the environment says otherwise.
        memory = os.environ.get("EXR_INSPECTOR_DUCKDB_MEMORY")
        config: dict = {"memory_limit": memory} if memory else {}
        if not read_only:
            config.setdefault("memory_limit", "48MB")
            config["threads"] = int(os.environ.get("EXR_INSPECTOR_DUCKDB_THREADS", "1"))
        try:
            self._con: duckdb.DuckDBPyConnection | None = _connect(self.path, read_only, config)
        except duckdb.Error as e:
            raise _open_error(self.path, e) from e
        # One DuckDB connection per thread (cursors share the database): the writer thread
        # upserts while the crawling thread looks files up, each in its own transactions.
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursor_lock = threading.Lock()
        try:
            self.ensure_schema()
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection: the opening thread's own, a cursor for any other."""
        if self._con is None:
            raise CatalogError(f"catalog {self.path} is closed")
        if threading.get_ident() == self._owner:
            return self._con
        cur = getattr(self._local, "con", None)
        if cur is None:
            with self._cursor_lock:
                cur = self._local.con = self._con.cursor()
                if not self.read_only:
                    cur.execute(f"USE {ALIAS}")  # a cursor starts in the in-memory database
                self._cursors.append(cur)
        return cur

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Report every DuckDB failure as a CatalogError naming the catalog."""
        try:
            yield
        except duckdb.Error as e:
            raise CatalogError(f"{what} failed on catalog {self.path}: {e}") from e

    @contextmanager
    def _transaction(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN … COMMIT; on any exception ROLLBACK, then raise CatalogError (interrupts pass through)."""
        con = self.con
        try:
            con.begin()
            yield con
            con.commit()
        except BaseException as e:
            with suppress(duckdb.Error):
                con.rollback()
            if isinstance(e, Exception) and not isinstance(e, CatalogError):
                if _disk_full(e):
                    raise CatalogError(
                        f"{what} failed: the disk holding catalog {self.path} is full; the batch was rolled back "
                        "and committed batches are kept: free space, then run the same command again") from e
                raise CatalogError(f"{what} failed on catalog {self.path} and was rolled back: {e}") from e
            raise

    def _stored_version(self, con: duckdb.DuckDBPyConnection) -> int | None:
        if not _scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'catalog_meta'"):
            return None
        stored = _scalar(con, "SELECT max(value) FROM catalog_meta WHERE key = 'schema_version'")
        return None if stored is None else int(stored)

    # -- schema -----------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create missing tables and indexes, record ``schema_version``; refuse another version."""
        if self.read_only:
            with self._errors("reading schema_version"):
                self._check_version(self._stored_version(self.con))
            return
        with self._transaction("creating the schema") as con:
            stored = self._stored_version(con)
            self._check_version(stored)
            if stored == SCHEMA_VERSION and self._complete(con):
                return  # the common case: ~20 DDL statements would cost a no-op re-crawl 8 ms
            for name, schema in TABLES.items():
                if name not in STORED and name != "files":
                    con.execute(ddl_for(name, schema))
            if stored is not None and stored < SCHEMA_VERSION:
                self._upgrade(con)
            if stored is not None and stored < 3:  # whole child tables: moved into rows, then lists
                for name in STORED:
                    con.execute(ddl_for(STORED[name], row_schema(name)))
            con.execute(ddl_for(FILES_TABLE, FILES_STORED))
            con.execute(ddl_for(FINGERPRINT_TABLE, FINGERPRINTS))
            for name, (table, _) in SHARED_TABLES.items():
                con.execute(ddl_for(table, shared_schema(name)))
            con.execute(ddl_for(EMBEDDINGS_TABLE, EMBEDDINGS_SCHEMA))
            if stored is not None and stored < 3:
                self._move_to_stored_layout(con)
            if stored is not None and stored < 4:
                self._rows_to_lists(con)
                self._add_path_hashes(con)
            for name in STORED:
                con.execute(ddl_for(STORED[name], stored_schema(name)))
            con.execute(files_view())
            for name in STORED:
                con.execute(view_for(name))
            for table, cols in INDEXES.items():
                con.execute(f"CREATE INDEX IF NOT EXISTS {_index_name(table)} ON {_q(table)} ({', '.join(map(_q, cols))})")
            if stored is None:
                con.execute("INSERT INTO catalog_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    @staticmethod
    def _complete(con: duckdb.DuckDBPyConnection) -> bool:
        """Every table and view of this version's layout is there (one catalog query)."""
        names = [n for n in TABLES if n not in STORED] + list(STORED) + list(STORED.values()) + [
            FILES_TABLE, FINGERPRINT_TABLE, EMBEDDINGS_TABLE, *(t for t, _ in SHARED_TABLES.values())]
        found = _scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
                             f"AND table_name IN ({', '.join('?' * len(names))})", names)
        return found == len(names)

    def _check_version(self, stored: int | None) -> None:
        if stored is not None and stored > SCHEMA_VERSION:
            raise CatalogError(
                f"catalog {self.path} has schema_version {stored}, newer than this exr-inspector's "
                f"{SCHEMA_VERSION}; upgrade exr-inspector to use it"
            )
        if stored is not None and stored < SCHEMA_VERSION and self.read_only:
            raise CatalogError(f"catalog {self.path} has schema_version {stored} < {SCHEMA_VERSION}; "
                               "open it once for writing (e.g. crawl) to upgrade it")

    @staticmethod
    def _upgrade(con: duckdb.DuckDBPyConnection) -> None:
        """Older catalogs lack columns added since: add them (nullable, so old rows read NULL)."""
        for name, schema in TABLES.items():
            have = _columns(con, name)
            missing = [f for f in schema if f.name not in have]
            if missing and name == "files":  # DuckDB alters no table an index depends on (the table goes after)
                con.execute("DROP INDEX IF EXISTS files_file_path_normalized_idx")
            for f in missing:
                con.execute(f"ALTER TABLE {_q(name)} ADD COLUMN {_q(f.name)} {sql_type(f.type)}")
        con.execute("UPDATE catalog_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])

    @staticmethod
    def _add_path_hashes(con: duckdb.DuckDBPyConnection, step: int = 1 << 20) -> None:
        """Version < 4 had no path_hash: add the column if need be and compute it for every
        row, ``step`` file keys at a time (memory stays bounded on a large catalog)."""
        if PATH_HASH.name not in _columns(con, FILES_TABLE):  # DuckDB alters no table an index depends on (it comes back after)
            con.execute(f"DROP INDEX IF EXISTS {_index_name(FILES_TABLE)}")
            con.execute(f"ALTER TABLE {FILES_TABLE} ADD COLUMN {PATH_HASH.name} BIGINT")
        top = _scalar(con, f"SELECT coalesce(max(file_key), -1) FROM {FILES_TABLE}")
        for lo in range(0, top + 1, step):
            rows = con.sql(f"SELECT file_key, file_path_normalized FROM {FILES_TABLE} "
                           f"WHERE file_key >= {int(lo)} AND file_key < {int(lo + step)}").to_arrow_table()
            con.register("_hashes", pa.table({"k": rows["file_key"],
                                              "h": hash_strings(rows["file_path_normalized"]).view(np.int64)}))
            try:
                con.execute(f"UPDATE {FILES_TABLE} SET {PATH_HASH.name} = m.h FROM _hashes m "
                            f"WHERE {FILES_TABLE}.file_key = m.k")
            finally:
                con.unregister("_hashes")

    @staticmethod
    def _rows_to_lists(con: duckdb.DuckDBPyConnection) -> None:
        """Version 3 stored a row per attribute and channel: gather each part's keys into one
        list row, in their stored order."""
        for name, column in LIST_COLUMNS.items():
            table = STORED[name]
            if column in _columns(con, table):
                continue
            key = SHARED_TABLES[name][1].name
            con.execute(ddl_for(f"{table}_lists", stored_schema(name)))
            con.execute(f"INSERT INTO {table}_lists SELECT file_key, part_index, list({key} ORDER BY rowid) "
                        f"FROM {table} GROUP BY file_key, part_index ORDER BY min(rowid)")
            con.execute(f"DROP VIEW IF EXISTS {_q(name)}")
            con.execute(f"DROP TABLE {table}")
            con.execute(f"ALTER TABLE {table}_lists RENAME TO {table}")

    @staticmethod
    def _move_to_stored_layout(con: duckdb.DuckDBPyConnection) -> None:
        """Version < 3 stored every table whole: move the rows into the stored layout, keyed
        exactly as a crawl keys them, then drop the old tables (their views replace them)."""
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables "
                                 "WHERE table_schema = 'main'").fetchall())
        if kinds.get("channels") != "BASE TABLE":
            return
        con.register("_emb_map", _vector_keys(con, "files", "metadata_embedding", EMBEDDINGS_SCHEMA))
        try:
            con.execute(f"INSERT INTO {EMBEDDINGS_TABLE} SELECT DISTINCT ON (embedding_key) * FROM _emb_map")
            cols = ", ".join({"embedding_key": "m.embedding_key", "file_key": "(row_number() OVER ()) - 1",
                              "path_hash": "0"}.get(c, f"r.{_q(c)}") for c in FILES_STORED.names)  # hashed after
            con.execute(f"INSERT INTO {FILES_TABLE} SELECT {cols} FROM files r "
                        "LEFT JOIN _emb_map m ON m.metadata_embedding = r.metadata_embedding")
            con.execute("DROP INDEX IF EXISTS files_file_path_normalized_idx")
            con.execute("DROP TABLE files")
        finally:
            con.unregister("_emb_map")
        con.register("_fp_map", _vector_keys(con, "channels", "channel_fingerprint", FINGERPRINTS))
        try:
            con.execute(f"INSERT INTO {FINGERPRINT_TABLE} SELECT DISTINCT ON (fingerprint_key) * FROM _fp_map")
            # Channels with their fingerprint's key, as a view the moves below read.
            con.execute("CREATE TEMP VIEW _channels_keyed AS SELECT c.*, m.fingerprint_key FROM channels c "
                        "LEFT JOIN _fp_map m ON m.channel_fingerprint = c.channel_fingerprint")
            sources = {"parts": "parts", "channels": "_channels_keyed", "attributes": "attributes"}
            for name, table in STORED.items():
                cols = ["f.file_key"] + [f"r.{_q(c)}" for c in row_schema(name).names[1:]]
                join = f" JOIN {FILES_TABLE} f ON f.file_id = r.file_id"
                if name in SHARED_TABLES:
                    shared, key = SHARED_TABLES[name]
                    names = SHARED_SCHEMAS[shared].names
                    con.execute(f"""INSERT INTO {shared} SELECT (row_number() OVER ()) - 1, * FROM
                                    (SELECT DISTINCT {', '.join(names)} FROM {sources[name]})""")
                    cols[-1] = f"v.{key.name}"
                    join += f" JOIN {shared} v ON " + " AND ".join(f"v.{c} IS NOT DISTINCT FROM r.{c}" for c in names)
                con.execute(f"INSERT INTO {_q(table)} SELECT {', '.join(cols)} FROM {sources[name]} r{join}")
            con.execute("DROP VIEW _channels_keyed")
            for name in STORED:
                con.execute(f"DROP TABLE {_q(name)}")
        finally:
            con.unregister("_fp_map")

    # -- writing ----------------------------------------------------------

    def upsert(self, batch: IngestBatch) -> UpsertStats:
        """Merge one batch in one transaction, keyed by ``files.file_path_normalized``.

        ``batch.now`` is every written file's ``last_inspected``. Files repeated
        inside one batch are refused (CatalogError) rather than resolved: their
        child rows could not be told apart. Child rows are written only for new
        and changed files; those of unchanged files are ignored.
        """
        return self.upsert_stream([batch])

    def upsert_stream(self, batches: Iterable[IngestBatch]) -> UpsertStats:
        """Merge batches inside ONE transaction, a few thousand files at a time: memory holds
        that many, and DuckDB sees large appends per table, which it writes straight to row
        groups of ``ROW_GROUP_ROWS`` (measured: 160 us a file in 10,000-file transactions, 390
        in 1,024-file ones, before the stored layout).

        Batches are merged ``MERGE_FILES`` files (at most ``MERGE_BYTES``) at a time,
        concatenated: each merge costs a fixed ~15 statements, 23 ms, so 1,024-file merges
        spent 58 us a file and 4,096-file ones 35. A group whose batches repeat a path, or
        differ in ``now``, is merged batch by batch, so a later batch still supersedes an
        earlier one. Replaced headers leave orphaned child rows (see ``_count_orphans``).
        """
        con = self.con
        total = UpsertStats()

        def merge(group: list[IngestBatch]) -> None:
            if len(group) > 1 and len({b.now for b in group}) == 1:  # a crawl's chunks share one `now`
                keys = pa.concat_arrays([b.files["file_path_normalized"].combine_chunks() for b in group])
                if pc.count_distinct(keys).as_py() == len(keys):
                    group = [IngestBatch.concat(group)]
            for b in group:
                stats = self._merge_one(con, b)
                total.inserted += stats.inserted
                total.replaced += stats.replaced
                total.unchanged += stats.unchanged
                total.errors += stats.errors

        with self._transaction("upsert"):
            self._orphans = 0
            self._next_key = {name: _scalar(con, f"SELECT coalesce(max({key.name}) + 1, 0) FROM {table}")
                              for name, (table, key) in SHARED_TABLES.items()}
            self._next_file_key = _scalar(con, f"SELECT coalesce(max(file_key) + 1, 0) FROM {FILES_TABLE}")
            group: list[IngestBatch] = []
            files = nbytes = 0
            for batch in batches:
                batch.checked_keys()
                group.append(batch)
                files += batch.num_files
                nbytes += batch.nbytes
                if files >= MERGE_FILES or nbytes >= MERGE_BYTES:
                    merge(group)
                    group, files, nbytes = [], 0, 0
            if group:
                merge(group)
            if self._orphans:
                self._count_orphans(con, self._orphans)
        return total

    def _count_orphans(self, con: duckdb.DuckDBPyConnection, new: int) -> None:
        """Add ``new`` orphaned files to the count in catalog_meta; past ``ORPHAN_FRACTION`` of
        the files (and at least ``ORPHAN_MIN``), collect them all, in the same transaction."""
        before = _scalar(con, "SELECT max(value) FROM catalog_meta WHERE key = 'orphan_files'")
        orphans = int(before or 0) + new
        if orphans >= max(ORPHAN_MIN, ORPHAN_FRACTION * _scalar(con, f"SELECT count(*) FROM {FILES_TABLE}")):
            self._collect_orphans(con)
            orphans = 0
        con.execute("DELETE FROM catalog_meta WHERE key = 'orphan_files'")
        con.execute("INSERT INTO catalog_meta VALUES ('orphan_files', ?)", [str(orphans)])

    @staticmethod
    def _collect_orphans(con: duckdb.DuckDBPyConnection) -> None:
        """Delete the child rows whose file row is gone (replaced headers): one pass per table."""
        for table in STORED.values():
            con.execute(f"DELETE FROM {table} WHERE file_key NOT IN (SELECT file_key FROM {FILES_TABLE})")

    def _merge_one(self, con: duckdb.DuckDBPyConnection, batch: IngestBatch) -> UpsertStats:
        registered: list[str] = []

        def register(view: str, table: pa.Table) -> None:
            con.register(view, table)
            registered.append(view)

        try:
            keys, vectors, distinct = key_vectors(batch.files["metadata_embedding"])
            i = FILES.get_field_index("metadata_embedding")
            self._file_base = self._next_file_key  # batch file i gets file_key base + i
            self._next_file_key += batch.num_files
            file_keys = pa.array(np.arange(self._file_base, self._next_file_key, dtype=np.int64))
            hashes = pa.array(hash_strings(batch.files["file_path_normalized"]).view(np.int64))
            register("_batch_files", batch.files.set_column(i, EMBEDDING_KEY, keys).append_column(FILE_KEY, file_keys)
                     .append_column(PATH_HASH, hashes))
            register("_batch_embeddings", pa.Table.from_arrays([pa.array(distinct), vectors], schema=EMBEDDINGS_SCHEMA))
            register("_batch_crawl_errors", batch.errors)
            return self._merge(con, batch, register)
        finally:
            for view in registered:
                with suppress(duckdb.Error):
                    con.unregister(view)

    def _merge(self, con: duckdb.DuckDBPyConnection, batch: IngestBatch, register) -> UpsertStats:
        """The upsert's statements, run inside its transaction over the registered ``_batch_*`` views."""
        now = naive_utc(batch.now)
        n_errors = batch.errors.num_rows
        with _candidates(con, "_batch_files", "path_hash") as known:
            if known:
                stats = self._merge_files(con, now, n_errors)
            else:  # no stored path has any of these hashes: every file is new (a first crawl), nothing to join
                stats = UpsertStats(batch.num_files, 0, 0, n_errors)
                con.execute("INSERT INTO file_rows BY NAME SELECT b.* REPLACE (? AS last_inspected) "
                            "FROM _batch_files b", [now])
        if stats.inserted or stats.replaced:
            con.execute(f"""INSERT INTO {EMBEDDINGS_TABLE} SELECT * FROM _batch_embeddings
                            WHERE embedding_key NOT IN (SELECT embedding_key FROM {EMBEDDINGS_TABLE})""")
            if batch.fingerprints.num_rows:
                register("_batch_fingerprints", batch.fingerprints)
                con.execute(f"""INSERT INTO {FINGERPRINT_TABLE} SELECT * FROM _batch_fingerprints
                                WHERE fingerprint_key NOT IN (SELECT fingerprint_key FROM {FINGERPRINT_TABLE})""")
            self._insert_children(con, batch, stats.unchanged > 0)
        if n_errors:
            con.execute("INSERT INTO crawl_errors BY NAME SELECT * FROM _batch_crawl_errors")
        if known:
            con.execute("DROP TABLE _upsert_keys")
        return stats

    def _merge_files(self, con: duckdb.DuckDBPyConnection, now: dt.datetime, n_errors: int) -> UpsertStats:
        """The batch's file rows against the stored ones with the same paths (TEMP TABLE
        _upsert_keys): new and changed files inserted, unchanged ones' audit columns updated."""
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _upsert_keys AS
            SELECT b.file_path_normalized AS path, b.file_id AS new_id, f.file_key AS old_key,
                   f.first_seen, f.inspection_count,
                   CASE WHEN f.file_path_normalized IS NULL THEN 'new'
                        WHEN f.header_hash = b.header_hash THEN 'same' ELSE 'changed' END AS action
            FROM _batch_files b LEFT JOIN (SELECT * FROM file_rows WHERE file_key IN (SELECT file_key FROM _candidates)) f
            USING (file_path_normalized)""")
        counts = dict(con.execute("SELECT action, count(*) FROM _upsert_keys GROUP BY action").fetchall())
        stats = UpsertStats(counts.get("new", 0), counts.get("changed", 0), counts.get("same", 0), n_errors)
        if stats.unchanged:
            con.execute("""
                UPDATE file_rows SET last_inspected = ?, inspection_count = coalesce(file_rows.inspection_count, 0) + 1,
                       size_bytes = b.size_bytes, mtime = b.mtime, mtime_ns = b.mtime_ns, inode = b.inode,
                       missing_since = NULL
                FROM _batch_files b JOIN _upsert_keys k ON k.path = b.file_path_normalized AND k.action = 'same'
                WHERE file_rows.file_key = k.old_key""",
                [now])
        if stats.replaced:
            # The old file row goes; its child rows stay behind, orphaned (the views join them to
            # file_rows by file_key, and a changed header gets a new key), until there are enough
            # of them to be worth a pass over the child tables (see _collect_orphans): deleting
            # a nightly 1% of changed files' children took most of that re-crawl's time.
            con.execute("DELETE FROM file_rows WHERE file_key IN (SELECT old_key FROM _upsert_keys WHERE action = 'changed')")
            self._orphans += stats.replaced
        if stats.inserted or stats.replaced:
            con.execute("""
                INSERT INTO file_rows BY NAME
                SELECT b.* REPLACE (coalesce(k.first_seen, b.first_seen) AS first_seen, ? AS last_inspected,
                                    coalesce(k.inspection_count + 1, b.inspection_count) AS inspection_count)
                FROM _batch_files b JOIN _upsert_keys k ON k.path = b.file_path_normalized
                WHERE k.action <> 'same'""", [now])
        return stats

    def _insert_children(self, con: duckdb.DuckDBPyConnection, batch: IngestBatch, some_unchanged: bool) -> None:
        """Child rows of the batch's new and changed files, in the stored layout.

        They go in through relations, not registered views: DuckDB holds a registered
        table until the transaction ends, which kept every chunk of a 10,000-file
        transaction in memory (measured: 125 MB of spool mappings in a crawl's writer).
        Row i of a shared table (attribute values, channel definitions) gets key
        ``base + i``, after the largest stored key; a batch's unchanged files (same
        header) write nothing, their shared rows included.
        """
        keyed = dict(batch.children)
        if some_unchanged:
            written = con.sql("SELECT new_id FROM _upsert_keys WHERE action <> 'same'").to_arrow_table()["new_id"]
            write = pc.is_in(batch.files["file_id"], value_set=written.combine_chunks())
            keyed = {name: t.filter(pc.take(write, t["file_index"])) for name, t in keyed.items()}
        shared = {"attributes": batch.values, "channels": batch.channel_defs}
        bases = {}
        for name, (table, _) in SHARED_TABLES.items():
            rows, index = shared[name], SHARED[name][2].name
            bases[name] = base = self._next_key[name]
            self._next_key[name] += rows.num_rows
            keys = pa.array(np.arange(base, base + rows.num_rows, dtype=np.int64))
            if some_unchanged:
                used = np.zeros(rows.num_rows, bool)
                used[keyed[name][index].to_numpy()] = True
                rows, keys = rows.filter(used), keys.filter(pa.array(used))
            if rows.num_rows:
                con.from_arrow(pa.Table.from_arrays([keys, *rows.columns], schema=shared_schema(name))).insert_into(table)
        for name, table in STORED.items():
            t = keyed[name]
            if not t.num_rows:
                continue
            cols = [pc.add(pc.cast(t["file_index"], pa.int64()), pa.scalar(self._file_base, pa.int64())), *t.columns[1:]]
            if name in SHARED_TABLES:  # the index into the batch's shared rows -> the stored key
                cols[-1] = pc.add(pc.cast(cols[-1], pa.int64()), pa.scalar(bases[name], pa.int64()))
                cols = _per_part(cols)
            con.from_arrow(pa.Table.from_arrays(cols, schema=stored_schema(name))).insert_into(table)

    def start_run(self, run_id: str, roots: Sequence[str], started_at: dt.datetime) -> None:
        with self._errors("start_run"):
            self.con.execute("INSERT INTO crawl_runs BY NAME SELECT ? AS run_id, ? AS roots, ? AS started_at, "
                             "'running' AS status, ? AS host, ? AS pid",
                             [run_id, list(roots), naive_utc(started_at), *run_origin()])

    def finish_run(self, run_id: str, status: str, counts: dict, finished_at: dt.datetime) -> None:
        with self._errors("finish_run"):
            n = _scalar(
                self.con, "UPDATE crawl_runs SET status = ?, counts = ?, finished_at = ? WHERE run_id = ?",
                [status, None if counts is None else orjson.dumps(counts, option=orjson.OPT_SORT_KEYS).decode(),
                 None if finished_at is None else naive_utc(finished_at), run_id],
            )
        if not n:
            raise CatalogError(f"finish_run: no run {run_id!r} in catalog {self.path}")

    # -- reading ----------------------------------------------------------

    def lookup(self, paths: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Table:
        """Known files among ``paths``, by a join against the registered path array."""
        keys = paths if isinstance(paths, pa.Array | pa.ChunkedArray) else pa.array(paths, pa.string())
        if len(keys) == 0:
            return LOOKUP_SCHEMA.empty_table()
        con = self.con
        with self._errors("lookup"):
            con.register("_lookup_paths", pa.table({"path": keys, "h": hash_strings(keys).view(np.int64)}))
            try:
                with _candidates(con, "_lookup_paths", "h"):
                    out = con.sql(f"""
                        SELECT {", ".join(LOOKUP_COLUMNS)} FROM file_rows
                        WHERE file_key IN (SELECT file_key FROM _candidates)
                          AND file_path_normalized IN (SELECT path FROM _lookup_paths)""").to_arrow_table()
            finally:
                con.unregister("_lookup_paths")
        return out.cast(LOOKUP_SCHEMA)

    def iter_prefix(self, prefix: str, columns: Sequence[str], batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
        cols = ", ".join(_q(c) for c in columns if c in FILES.names or _unknown(c))
        with self._errors("iter_prefix"):
            source = "files" if "metadata_embedding" in columns else FILES_TABLE  # the view joins the vectors in
            reader = self.con.sql(f"SELECT {cols} FROM {source} WHERE starts_with(file_path_normalized, ?)",
                                  params=[prefix]).to_arrow_reader(batch_rows)
            yield from reader

    def scan(self, table: str, columns: Sequence[str] | None = None, where: dict | None = None) -> pa.Table:
        if table not in TABLES:
            raise ValueError(f"unknown catalog table {table!r} (known: {', '.join(TABLES)})")
        schema = TABLES[table]
        names = [c for c in (columns or schema.names) if c in schema.names or _unknown(c)]
        sql, params = self._where(where or {}, schema)
        with self._errors(f"scan({table})"):
            out = self.con.sql(f"SELECT {', '.join(map(_q, names))} FROM {_q(table)} WHERE TRUE{sql}",
                               params=params).to_arrow_table()
        return out.cast(pa.schema([schema.field(c) for c in names]))  # the views' columns carry no NOT NULL

    def _with_paths(self, what: str, paths, sql: str, params: Sequence = ()) -> int:
        """Run one UPDATE/DELETE over ``files`` joined to a registered path array, in a transaction."""
        keys = paths if isinstance(paths, pa.Array | pa.ChunkedArray) else pa.array(list(paths), pa.string())
        if len(keys) == 0:
            return 0
        con = self.con
        con.register("_paths", pa.table({"path": keys, "h": hash_strings(keys).view(np.int64)}))
        try:
            with self._transaction(what), _candidates(con, "_paths", "h"):
                return _scalar(con, sql, list(params))
        finally:
            con.unregister("_paths")

    def touch(self, paths, now: dt.datetime) -> int:
        return self._with_paths("touch", paths, """
            UPDATE file_rows SET last_inspected = ?, inspection_count = coalesce(inspection_count, 0) + 1,
                   missing_since = NULL
            WHERE file_key IN (SELECT file_key FROM _candidates) AND file_path_normalized IN (SELECT path FROM _paths)""",
            [naive_utc(now)])

    def mark_missing(self, paths, since: dt.datetime) -> int:
        return self._with_paths("mark_missing", paths, """
            UPDATE file_rows SET missing_since = ?
            WHERE missing_since IS NULL AND file_key IN (SELECT file_key FROM _candidates)
              AND file_path_normalized IN (SELECT path FROM _paths)""",
            [naive_utc(since)])

    def apply_renames(self, old_paths: Sequence[str], new_paths: Sequence[str]) -> int:
        if len(old_paths) != len(new_paths):
            raise ValueError("apply_renames: old_paths and new_paths differ in length")
        if not len(old_paths):
            return 0
        con = self.con
        con.register("_renames", pa.table({"old": pa.array(list(old_paths), pa.string()),
                                           "new": pa.array(list(new_paths), pa.string())}))
        try:
            with self._transaction("apply_renames"):
                # the old rows' children are orphaned, as a replaced header's are
                gone = _scalar(con, "DELETE FROM file_rows WHERE file_path_normalized IN (SELECT old FROM _renames)")
                if gone:
                    self._count_orphans(con, gone)
                return _scalar(con, """UPDATE file_rows SET renamed_from = r.old FROM _renames r
                                       WHERE file_rows.file_path_normalized = r.new""")
        finally:
            con.unregister("_renames")

    def prune(self, missing_before: dt.datetime, prefix: str = "") -> int:
        con = self.con
        gone = ("SELECT file_key FROM file_rows WHERE missing_since < ? AND starts_with(file_path_normalized, ?)")
        params = [naive_utc(missing_before), prefix]
        with self._transaction("prune"):
            n = _scalar(con, f"DELETE FROM file_rows WHERE file_key IN ({gone})", params)
            self._collect_orphans(con)  # the pruned files' children, and those of replaced headers
            con.execute("DELETE FROM catalog_meta WHERE key = 'orphan_files'")
            con.execute(f"""DELETE FROM {EMBEDDINGS_TABLE} WHERE embedding_key NOT IN
                            (SELECT embedding_key FROM {FILES_TABLE} WHERE embedding_key IS NOT NULL)""")
            for name, (table, key) in SHARED_TABLES.items():
                con.execute(f"DELETE FROM {table} WHERE {key.name} NOT IN (SELECT {key.name} FROM {_unnested(name)})")
            con.execute(f"""DELETE FROM {FINGERPRINT_TABLE} WHERE fingerprint_key NOT IN
                            (SELECT fingerprint_key FROM channel_defs WHERE fingerprint_key IS NOT NULL)""")
            return n

    def runs(self, status: str | None = None) -> pa.Table:
        return self.scan("crawl_runs", where={"status": status} if status else None)

    def search(self, vector: np.ndarray, k: int = 10, where: dict | None = None) -> pa.Table:
        """Top-k by ``array_inner_product``; ``where`` becomes an AND of parameterised IN-lists.

        Raises ValueError for a vector of the wrong size or an unknown/non-scalar ``where`` column.
        """
        vec = np.asarray(vector, dtype=np.float32).ravel()
        if vec.size != EMBEDDING_DIM:
            raise ValueError(f"search vector has {vec.size} values, expected {EMBEDDING_DIM}")
        if k <= 0:
            return SEARCH_SCHEMA.empty_table()
        sql, params = self._where(where or {}, FILES)
        with self._errors("search"):
            out = self.con.sql(
                f"""SELECT r.file_path, r.file_id, e.score FROM {FILES_TABLE} r JOIN (
                        SELECT embedding_key, array_inner_product(metadata_embedding, ?::FLOAT[{EMBEDDING_DIM}])::DOUBLE
                               AS score FROM {EMBEDDINGS_TABLE}) e USING (embedding_key)
                    WHERE TRUE{sql} ORDER BY score DESC, file_path LIMIT ?""",
                params=[vec.tolist(), *params, k],
            ).to_arrow_table()
        return out.cast(SEARCH_SCHEMA)

    @staticmethod
    def _where(where: dict, schema: pa.Schema) -> tuple[str, list]:
        """`` AND col IN (?, …)`` per column; a None among the values matches NULL."""
        sql, params = [], []
        for col, value in where.items():
            if col not in schema.names:
                raise ValueError(f"unknown column {col!r}")
            t = schema.field(col).type
            if pa.types.is_nested(t):
                raise ValueError(f"cannot filter on {col!r} ({t})")
            values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
            present = [v for v in values if v is not None]
            terms = [f"{_q(col)} IN ({', '.join('?' * len(present))})"] if present else []
            if len(present) < len(values):
                terms.append(f"{_q(col)} IS NULL")
            sql.append(f" AND ({' OR '.join(terms) or 'FALSE'})")
            params.extend(present)
        return "".join(sql), params

    def get_embedding(self, path: str) -> np.ndarray | None:
        with self._errors("get_embedding"):
            rows = self.con.execute(
                f"SELECT e.metadata_embedding FROM {FILES_TABLE} r JOIN {EMBEDDINGS_TABLE} e USING (embedding_key) "
                "WHERE r.file_path_normalized = ? LIMIT 1", [path]
            ).fetchall()
        return np.asarray(rows[0][0], dtype=np.float32) if rows and rows[0][0] is not None else None

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown catalog table {table!r} (known: {', '.join(TABLES)})")
        with self._errors(f"count({table})"):
            return _scalar(self.con, f"SELECT count(*) FROM {_q(table)}")

    def query(self, sql: str, params: Sequence | None = None) -> pa.Table:
        """Raw SQL on the embedded catalog (the documented catalog queries run unchanged)."""
        with self._errors("query"):
            rel = self.con.sql(sql, params=params)
            return rel.to_arrow_table() if rel is not None else pa.table({})

    def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            with self._cursor_lock:
                for cur in self._cursors:
                    with suppress(duckdb.Error):
                        cur.close()
                self._cursors.clear()
            con.close()
