"""The facility-scale catalog: VAST DataBase through the ``vastdb`` SDK.

VAST has no unique keys, no joins in select, CNF-only predicates and 5 MiB
requests, so the upsert is built from what it does have, inside ONE transaction
per batch: chunked ``isin`` lookups by key, updates and deletes by ``$row_id``,
and inserts sliced client-side so each request is a single pure insert. Tables
are opened once per transaction. Vectors are unit-norm, so cosine ranking is an
inner product, computed locally over a predicate-filtered select (VAST's own
vector search needs ADBC and a vector index; see README).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .base import (
    LOOKUP_COLUMNS,
    LOOKUP_SCHEMA,
    Catalog,
    CatalogError,
    IngestBatch,
    NotSupported,
    UpsertStats,
    naive_utc,
    run_origin,
)
from .schema import CRAWL_RUNS, EMBEDDING_DIM, FILE_TABLES, FILES, SCHEMA_VERSION, TABLES
from .vast_config import VastConfig, mask

# The SDK logs every non-2xx response at ERROR before raising it; each failure is
# reported once, mapped to a clear message, by this module.
logging.getLogger("vastdb").setLevel(logging.CRITICAL)

ROW_ID = "$row_id"
MAX_REQUEST = 5 << 20  # VAST's cap on one request body
INSERT_SLICE = int(0.9 * MAX_REQUEST)  # the SDK's single-request slice: one POST, no column-wise UPDATEs
# A computeir ``isin`` costs about 125 bytes per key on top of the key itself (measured):
# keep each lookup predicate near 2.5 MiB, well under the cap.
KEY_OVERHEAD = 128
KEYS_BUDGET = 5 << 19

SEARCH_SCHEMA = pa.schema([FILES.field("file_path"), FILES.field("file_id"), pa.field("score", pa.float64())])
SMALL_KEYS = 64  # below this, one isin literal per key is cheaper than working out ranges
RANGES_PER_SELECT = 512  # directory ranges per select: ~1,000 literals, far below the request cap
_AUDIT = ["last_inspected", "inspection_count", "size_bytes", "mtime", "mtime_ns", "inode", "missing_since"]
_CONFLICT_RETRIES = 4


# -- SDK errors → one clear CatalogError each -------------------------------------


def _explain(e: BaseException, what: str, cfg: VastConfig) -> CatalogError | None:
    """The message for an SDK/transport failure, or None if ``e`` is not one (a bug: let it through)."""
    import requests
    from vastdb import errors

    where = f"VAST at {cfg.endpoint}"
    if isinstance(e, errors.MissingBucket):
        return CatalogError(f"{what}: bucket {cfg.bucket!r} does not exist on {where}; create a Database-enabled "
                            "bucket (and give the user's identity policy tabular access) first: the SDK cannot")
    if isinstance(e, errors.MissingSchema):
        return CatalogError(f"{what}: schema {cfg.schema!r} does not exist in bucket {cfg.bucket!r} on {where}; "
                            "crawl into it once to create it")
    if isinstance(e, errors.MissingTable):
        return CatalogError(f"{what}: a catalog table is missing from {cfg.url} on {where} ({e}); "
                            "crawl into it once to create the tables")
    if isinstance(e, errors.Forbidden):
        return CatalogError(f"{what}: {where} refused access key {mask(cfg.access_key)} (403 Forbidden): check "
                            "VAST_DB_ACCESS_KEY / VAST_DB_SECRET_KEY and the user's tabular identity policy")
    if isinstance(e, ValueError) and "401 is not a valid HttpStatus" in str(e):
        return CatalogError(f"{what}: {where} did not accept the credentials (401 Unauthorized): check "
                            "VAST_DB_ACCESS_KEY / VAST_DB_SECRET_KEY")
    if isinstance(e, errors.Slowdown | errors.ServiceUnavailable):
        return CatalogError(f"{what}: {where} is overloaded (503 {e.code or 'ServiceUnavailable'}) and still was "
                            f"after {cfg.max_tries} tries with backoff; retry later or lower --workers")
    if isinstance(e, errors.TooLargeRequest):
        return CatalogError(f"{what}: a request to {where} would exceed VAST's 5 MiB limit ({type(e).__name__})")
    if isinstance(e, errors.BadRequest):
        code = e.code or ""
        if "Mismatch" in code or "ColumnType" in code or "Unsupported" in code:
            return CatalogError(f"{what}: type mismatch: {cfg.url} has columns of other types than this "
                                f"exr-inspector's schema version {SCHEMA_VERSION} ({code}: {e.message})")
        if "TooLarge" in code or "Size" in code or "MaxMessageLength" in code:
            return CatalogError(f"{what}: request too large for {where} ({code}: {e.message})")
        return CatalogError(f"{what}: {where} rejected the request (400 {code}: {e.message})")
    if isinstance(e, errors.Conflict):
        return CatalogError(f"{what}: conflicting concurrent change on {where} (409 {e.code}); run it again")
    if isinstance(e, errors.HttpError):
        return CatalogError(f"{what}: {where} failed ({e.status} {e.code}: {e.message})")
    if isinstance(e, requests.Timeout):
        return CatalogError(f"{what}: {where} did not answer within {cfg.timeout:g} s; check the endpoint "
                            "and network, or raise the timeout")
    if isinstance(e, errors.ConnectionError | requests.ConnectionError):
        return CatalogError(f"{what}: cannot reach {where}; check VAST_DB_ENDPOINT and the network")
    if isinstance(e, errors.NotSupportedSchema | errors.NotSupportedVersion):
        return CatalogError(f"{what}: {where} does not support this: {e}")
    if isinstance(e, errors.Missing | errors.Exists | errors.InvalidArgument | errors.NotSupported):
        return CatalogError(f"{what}: {type(e).__name__}: {e}")
    return None


def _conflict(e: BaseException) -> bool:
    from vastdb import errors

    return isinstance(e, errors.Conflict | errors.Exists)


# -- request shaping ----------------------------------------------------------------


def key_chunks(keys: pa.Array) -> Iterator[pa.Array]:
    """Slices of ``keys`` (strings or numbers) whose ``isin`` predicate stays far below the request cap."""
    if len(keys) == 0:
        return
    if pa.types.is_string(keys.type) or pa.types.is_binary(keys.type):
        cost = pc.add(pc.fill_null(pc.binary_length(keys), 0), KEY_OVERHEAD).to_numpy().cumsum()
    else:
        cost = np.full(len(keys), KEY_OVERHEAD + 8, np.int64).cumsum()
    start = 0
    while start < len(keys):
        base = cost[start - 1] if start else 0
        stop = max(int(np.searchsorted(cost, base + KEYS_BUDGET, side="right")), start + 1)
        yield keys.slice(start, stop - start)
        start = stop


def _ipc_size(batch: pa.RecordBatch) -> int:
    """Bytes of ``batch`` as the SDK sends it: one IPC stream (schema, batch, end marker)."""
    return pa.ipc.get_record_batch_size(batch) + batch.schema.serialize().size + 8


def insert_slices(table: pa.Table, limit: int = INSERT_SLICE) -> Iterator[pa.RecordBatch]:
    """Row slices of ``table`` that each serialise to at most ``limit`` bytes, as full as possible."""
    if table.num_rows == 0:
        return
    batch = table.combine_chunks().to_batches(max_chunksize=table.num_rows)[0]
    overhead = batch.schema.serialize().size + 1024
    per_row = max(1.0, (pa.ipc.get_record_batch_size(batch)) / batch.num_rows)
    start = 0
    while start < batch.num_rows:
        rows = max(1, min(batch.num_rows - start, int((limit - overhead) / per_row)))
        while True:
            piece = batch.slice(start, rows)
            size = _ipc_size(piece)
            if size <= limit:
                break
            if rows == 1:
                raise CatalogError(f"one row of {size} bytes does not fit in a {limit}-byte VAST request")
            rows = max(1, int(rows * (limit - overhead) / size * 0.98))
        yield piece
        start += rows


def _require_not_null(name: str, table: pa.Table) -> None:
    """VAST does not enforce NOT NULL; the schema's non-nullable columns are checked before each insert."""
    for f in table.schema:
        if not f.nullable and table[f.name].null_count:
            raise CatalogError(f"upsert refused: {table[f.name].null_count} null(s) in non-nullable {name}.{f.name}")


def _schemas_match(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Differences between a stored table's columns and ours (names and types, child nullability included)."""
    got = {f.name: f for f in actual}
    out = []
    for f in expected:
        g = got.get(f.name)
        if g is None:
            out.append(f"missing column {f.name}")
        elif not g.type.equals(f.type):
            out.append(f"{f.name} is {g.type}, expected {f.type}")
    return out


class _Tx:
    """One SDK transaction with its tables opened once (5 RPCs each), not once per call."""

    def __init__(self, tx, cfg: VastConfig):
        self.tx = tx
        self.cfg = cfg
        self._schema = None
        self._tables: dict = {}

    @property
    def schema(self):
        if self._schema is None:
            self._schema = self.tx.bucket(self.cfg.bucket).schema(self.cfg.schema)
        return self._schema

    def table(self, name: str):
        if name not in self._tables:
            self._tables[name] = self.schema.table(name)
        return self._tables[name]

    def select(self, name: str, columns: list[str], predicate=None, *, row_id: bool = False) -> pa.Table:
        t = self.table(name)
        pred = predicate(t) if callable(predicate) else predicate
        return t.select(columns=list(columns), predicate=pred, internal_row_id=row_id).read_all()

    def select_in(self, name: str, columns: list[str], key: str, keys: pa.Array, *, row_id: bool = False) -> pa.Table:
        """Rows whose ``key`` is in ``keys``: one ``isin`` select per chunk below the request cap."""
        keys = pc.unique(keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys).drop_null()
        parts = [self.select(name, columns, lambda t, c=chunk: t[key].isin(c.to_pylist()), row_id=row_id)
                 for chunk in key_chunks(keys)]
        if not parts:
            schema = TABLES[name]
            fields = [schema.field(c) for c in columns] + ([pa.field(ROW_ID, pa.uint64())] if row_id else [])
            return pa.schema(fields).empty_table()
        return pa.concat_tables(parts)

    def select_paths(self, name: str, columns: list[str], keys, *, row_id: bool = False) -> pa.Table:
        """Rows whose ``file_path_normalized`` is in ``keys``, by directory ranges.

        The SDK serialises every predicate literal in pure Python (about 0.1 ms each),
        so one ``isin`` literal per path would cost more than parsing the file. Paths
        are sorted and cut into runs that share a directory; each run becomes one
        ``between(first, last)`` in a single-column OR-group (two literals per
        directory), and the exact match is made locally. Non-ASCII keys, whose order
        the server might not share, and small sets use ``isin``.
        """
        col = "file_path_normalized"
        if col not in columns:  # the exact match below needs it
            columns = [col, *columns]
        keys = pc.unique(keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys).drop_null()
        if len(keys) <= SMALL_KEYS or not pc.all(pc.string_is_ascii(keys)).as_py():
            return self.select_in(name, columns, col, keys, row_id=row_id)
        keys = pc.take(keys, pc.sort_indices(keys))
        dirs = pc.dictionary_encode(pc.replace_substring_regex(keys, r"/[^/]*$", "")).indices.to_numpy()
        starts = np.flatnonzero(np.diff(dirs, prepend=-1))
        ends = np.append(starts[1:], len(keys)) - 1
        lo, hi = pc.take(keys, starts).to_pylist(), pc.take(keys, ends).to_pylist()
        parts = []
        for i in range(0, len(lo), RANGES_PER_SELECT):
            ranges = list(zip(lo[i:i + RANGES_PER_SELECT], hi[i:i + RANGES_PER_SELECT], strict=True))

            def pred(t, ranges=ranges):
                terms = [t[col].between(a, b) if a != b else t[col] == a for a, b in ranges]
                out = terms[0]
                for term in terms[1:]:
                    out = out | term
                return out

            got = self.select(name, columns, pred, row_id=row_id)
            parts.append(got.filter(pc.is_in(got[col], value_set=keys)))
        return pa.concat_tables(parts)

    def insert(self, name: str, table: pa.Table) -> None:
        """Insert in slices of at most ``INSERT_SLICE`` bytes, so each is one pure insert request."""
        _require_not_null(name, table)
        t = self.table(name)
        for piece in insert_slices(table.cast(TABLES[name])):
            t.insert(piece)

    def delete(self, name: str, row_ids: pa.Array) -> None:
        if len(row_ids):
            self.table(name).delete(pa.table({ROW_ID: row_ids}))


class VastCatalog(Catalog):
    """A catalog in a VAST DataBase schema: ``vast://BUCKET/SCHEMA`` (see ``VastConfig.resolve``).

    Settings not given as keyword arguments (``endpoint``, ``access_key``,
    ``secret_key``, ``bucket``, ``schema``, ``allow_insecure``, ``timeout``,
    ``max_tries``, ``writers``) come from the environment. Opening connects and,
    unless ``read_only``, creates the schema and tables (get-or-create); a
    ``read_only`` catalog refuses every write.
    """

    def __init__(self, url: str = "vast://", *, read_only: bool = False, config: VastConfig | None = None,
                 create: bool = True, **settings) -> None:
        self.config = config or VastConfig.resolve(url, **settings)
        self.url = self.config.url
        self.read_only = read_only
        with self._errors("connecting"):
            import vastdb
            from vastdb.config import BackoffConfig

            c = self.config
            self._session = vastdb.connect(
                endpoint=c.endpoint, access=c.access_key, secret=c.secret_key, timeout=c.timeout,
                backoff_config=BackoffConfig(max_tries=c.max_tries, max_time=max(30.0, 4 * c.timeout)),
            )
        if create and not read_only:
            self.ensure_schema()

    @property
    def parallel_writers(self) -> int:
        """How many writers may upsert at once (each with its own Session): VAST takes concurrent transactions."""
        return self.config.writers

    def clone(self) -> VastCatalog:
        """Another connection to the same catalog, for another writer thread (Sessions are not shareable)."""
        return VastCatalog(self.url, read_only=self.read_only, config=self.config, create=False)

    # -- plumbing -----------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except CatalogError as e:
            raise CatalogError(self.config.scrub(str(e))) from None
        except Exception as e:
            mapped = _explain(e, what, self.config)
            if mapped is None:
                raise
            raise CatalogError(self.config.scrub(str(mapped))) from None

    @contextlib.contextmanager
    def _transaction(self, what: str, write: bool = False) -> Iterator[_Tx]:
        """One SDK transaction: commit on success, rollback (by the SDK) on any exception."""
        if self._session is None:
            raise CatalogError(f"catalog {self.url} is closed")
        if write and self.read_only:
            raise CatalogError(f"{what}: catalog {self.url} was opened read-only")
        with self._errors(what), self._session.transaction() as tx:
            yield _Tx(tx, self.config)

    def _retrying(self, what: str, fn):
        """Run ``fn`` (one whole transaction) again after a 409/Exists race, with backoff."""
        for attempt in range(_CONFLICT_RETRIES):
            try:
                return fn()
            except CatalogError as e:
                if attempt + 1 == _CONFLICT_RETRIES or not _conflict(e.__context__ or e.__cause__):
                    raise
            time.sleep(0.05 * 2 ** attempt)
        raise AssertionError("unreachable")

    # -- schema -------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Get-or-create the schema and every table; refuse tables whose columns differ from ours."""
        self._retrying("creating the schema", self._ensure_schema_once)

    def _ensure_schema_once(self) -> None:
        with self._transaction("creating the schema", write=True) as t:
            bucket = t.tx.bucket(self.config.bucket)
            schema = bucket.create_schema(self.config.schema, fail_if_exists=False)
            problems = []
            for name, arrow_schema in TABLES.items():
                table = schema.create_table(name, arrow_schema, fail_if_exists=False)
                have = set(table.arrow_schema.names)
                added = [f for f in arrow_schema if f.name not in have]  # columns of a newer schema version
                if added:
                    table.add_column(pa.schema(added))
                    table = schema.table(name)
                problems += [f"{name}: {p}" for p in _schemas_match(table.arrow_schema, arrow_schema)]
            if problems:
                raise CatalogError(f"type mismatch: the tables in {self.url} differ from this exr-inspector's "
                                   f"schema version {SCHEMA_VERSION}: " + "; ".join(problems))
            t._schema = schema
            meta = t.select("catalog_meta", ["value"], lambda tb: tb["key"] == "schema_version", row_id=True)
            versions = [int(v) for v in meta["value"].to_pylist() if v is not None]
            if versions and max(versions) > SCHEMA_VERSION:
                raise CatalogError(f"catalog {self.url} has schema_version {max(versions)}, newer than this "
                                   f"exr-inspector's {SCHEMA_VERSION}; upgrade exr-inspector to use it")
            if not versions:
                t.insert("catalog_meta", pa.table({"key": ["schema_version"], "value": [str(SCHEMA_VERSION)]}))
            elif max(versions) < SCHEMA_VERSION:
                t.table("catalog_meta").update(pa.table({
                    ROW_ID: meta[ROW_ID], "value": pa.array([str(SCHEMA_VERSION)] * meta.num_rows, pa.string())}))

    # -- writing ------------------------------------------------------------------

    def upsert(self, batch: IngestBatch) -> UpsertStats:
        """Merge one batch in ONE transaction: lookup by key, update/delete by ``$row_id``, insert."""
        keys = batch.checked_keys()
        if batch.num_files == 0 and batch.errors.num_rows == 0:
            return UpsertStats()
        with self._transaction("upsert", write=True) as t:
            return self._merge(t, batch, keys)

    def _merge(self, t: _Tx, batch: IngestBatch, keys: pa.Array) -> UpsertStats:
        now = naive_utc(batch.now)
        files = batch.files
        stats = UpsertStats(errors=batch.errors.num_rows)
        if len(keys):
            old = t.select_paths("files", ["file_path_normalized", "file_id", "header_hash", "first_seen",
                                           "inspection_count"], keys, row_id=True)
            # More than one row for a path can only come from an earlier racing writer: keep the oldest.
            oldest = old.group_by("file_path_normalized", use_threads=False).aggregate([(ROW_ID, "min")])
            first = pc.is_in(old[ROW_ID], value_set=oldest[f"{ROW_ID}_min"].combine_chunks())
            extra = old.filter(pc.invert(first))
            old = old.filter(first)
            idx = pc.index_in(keys, old["file_path_normalized"])  # position of each batch file among old rows
            known = pc.is_valid(idx)
            old_hash = pc.take(old["header_hash"], idx)
            same = pc.fill_null(pc.and_(known, pc.equal(old_hash, files["header_hash"].combine_chunks())), False)
            changed = pc.and_(known, pc.invert(same))
            stats.unchanged = pc.sum(same).as_py() or 0
            stats.replaced = pc.sum(changed).as_py() or 0
            stats.inserted = len(keys) - stats.unchanged - stats.replaced

            if stats.unchanged:
                sel = pc.filter(idx, same)
                upd = files.filter(same).select(_AUDIT[2:6])
                audit = pa.table({
                    ROW_ID: pc.take(old[ROW_ID], sel),
                    "last_inspected": pa.array(np.full(len(sel), np.datetime64(now, "us")), FILES.field("last_inspected").type),
                    "inspection_count": pc.add(pc.fill_null(pc.take(old["inspection_count"], sel), 0), 1),
                    **{c: upd[c] for c in upd.column_names},
                    "missing_since": pa.nulls(len(sel), FILES.field("missing_since").type),
                })
                t.table("files").update(audit)
            if stats.replaced or extra.num_rows:
                sel = pc.filter(idx, changed)
                gone_ids = pa.concat_arrays([pc.take(old["file_id"], sel).combine_chunks(),
                                             extra["file_id"].combine_chunks()])
                for name in FILE_TABLES[1:]:
                    hits = t.select_in(name, ["file_id"], "file_id", gone_ids, row_id=True)
                    t.delete(name, hits[ROW_ID].combine_chunks())
                t.delete("files", pa.concat_arrays([pc.take(old[ROW_ID], sel).combine_chunks(),
                                                    extra[ROW_ID].combine_chunks()]))

            write = pc.invert(same)
            if stats.inserted or stats.replaced:
                out = files.filter(write)
                pos = pc.filter(idx, write)
                old_first = pc.take(old["first_seen"], pos)
                old_count = pc.take(old["inspection_count"], pos)
                out = _set(out, "first_seen", pc.coalesce(old_first, out["first_seen"].combine_chunks()))
                out = _set(out, "last_inspected", pa.array(np.full(out.num_rows, np.datetime64(now, "us")),
                                                           FILES.field("last_inspected").type))
                out = _set(out, "inspection_count", pc.coalesce(pc.add(old_count, 1),
                                                                out["inspection_count"].combine_chunks()))
                t.insert("files", out)
                ids = files.filter(write)["file_id"].combine_chunks()
                for name in FILE_TABLES[1:]:
                    child = getattr(batch, name)
                    if stats.unchanged:
                        child = child.filter(pc.is_in(child["file_id"], value_set=ids))
                    t.insert(name, child)
        if stats.errors:
            t.insert("crawl_errors", batch.errors)
        return stats

    def start_run(self, run_id: str, roots: Sequence[str], started_at: dt.datetime) -> None:
        host, pid = run_origin()
        row = pa.table({"run_id": [run_id], "roots": [list(roots)], "started_at": [naive_utc(started_at)],
                        "finished_at": [None], "status": ["running"], "counts": [None], "host": [host],
                        "pid": [pid]}, schema=CRAWL_RUNS)
        with self._transaction("start_run", write=True) as t:
            t.insert("crawl_runs", row)

    def finish_run(self, run_id: str, status: str, counts: dict | None, finished_at: dt.datetime | None) -> None:
        with self._transaction("finish_run", write=True) as t:
            hits = t.select("crawl_runs", ["run_id"], lambda tb: tb["run_id"] == run_id, row_id=True)
            if hits.num_rows == 0:
                raise CatalogError(f"finish_run: no run {run_id!r} in catalog {self.url}")
            n = hits.num_rows
            t.table("crawl_runs").update(pa.table({
                ROW_ID: hits[ROW_ID],
                "finished_at": pa.array([finished_at and naive_utc(finished_at)] * n, CRAWL_RUNS.field("finished_at").type),
                "status": pa.array([status] * n, pa.string()),
                "counts": pa.array([None if counts is None else orjson.dumps(counts, option=orjson.OPT_SORT_KEYS).decode()] * n,
                                   pa.string()),
            }))

    # -- reading ------------------------------------------------------------------

    def lookup(self, paths: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Table:
        """Known files among ``paths``: chunked ``isin`` selects, no joins, bounded memory per chunk."""
        keys = paths if isinstance(paths, pa.Array | pa.ChunkedArray) else pa.array(paths, pa.string())
        if len(keys) == 0:
            return LOOKUP_SCHEMA.empty_table()
        with self._transaction("lookup") as t:
            out = t.select_paths("files", list(LOOKUP_COLUMNS), keys)
        return out.select(list(LOOKUP_COLUMNS)).cast(LOOKUP_SCHEMA)

    def scan(self, table: str, columns: Sequence[str] | None = None, where: dict | None = None) -> pa.Table:
        """Rows of one table, ``where`` pushed down as CNF; a long IN list is split into requests under the cap."""
        if table not in TABLES:
            raise ValueError(f"unknown catalog table {table!r} (known: {', '.join(TABLES)})")
        schema = TABLES[table]
        cols = list(columns or schema.names)
        for c in cols:
            if c not in schema.names:
                raise ValueError(f"unknown column {c!r}")
        where = dict(where or {})
        pred = _predicate(schema, where)
        if pred is False:
            return pa.schema([schema.field(c) for c in cols]).empty_table()
        big = [c for c, v in where.items() if isinstance(v, list | tuple | set | frozenset | pa.Array) and len(v) > 1000]
        with self._transaction(f"scan({table})") as t:
            if not big:
                return t.select(table, cols, pred)
            col = big[0]
            values = pa.array(list(where.pop(col)), schema.field(col).type)
            rest = _predicate(schema, where)
            parts = [t.select(table, cols, lambda tb, c=chunk: _and(tb[col].isin(c.to_pylist()), rest, tb))
                     for chunk in key_chunks(values)]
            return pa.concat_tables(parts) if parts else pa.schema([schema.field(c) for c in cols]).empty_table()

    def iter_prefix(self, prefix: str, columns: Sequence[str], batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
        """A streamed ``startswith`` select: VAST filters server-side, batches arrive as the SDK reads them."""
        for c in columns:
            if c not in FILES.names:
                raise ValueError(f"unknown column {c!r}")
        with self._transaction("iter_prefix") as t:
            tb = t.table("files")
            yield from tb.select(columns=list(columns), predicate=tb["file_path_normalized"].startswith(prefix))

    def _rows_of(self, t: _Tx, paths) -> pa.Table:
        keys = paths if isinstance(paths, pa.Array | pa.ChunkedArray) else pa.array(list(paths), pa.string())
        return t.select_paths("files", ["file_path_normalized", "file_id", "inspection_count", "missing_since"],
                              keys, row_id=True)

    def touch(self, paths, now: dt.datetime) -> int:
        with self._transaction("touch", write=True) as t:
            rows = self._rows_of(t, paths)
            if rows.num_rows:
                n = rows.num_rows
                t.table("files").update(pa.table({
                    ROW_ID: rows[ROW_ID],
                    "last_inspected": pa.array([naive_utc(now)] * n, FILES.field("last_inspected").type),
                    "inspection_count": pc.add(pc.fill_null(rows["inspection_count"], 0), 1),
                    "missing_since": pa.nulls(n, FILES.field("missing_since").type),
                }))
            return rows.num_rows

    def mark_missing(self, paths, since: dt.datetime) -> int:
        with self._transaction("mark_missing", write=True) as t:
            rows = self._rows_of(t, paths)
            rows = rows.filter(pc.is_null(rows["missing_since"]))
            if rows.num_rows:
                t.table("files").update(pa.table({
                    ROW_ID: rows[ROW_ID],
                    "missing_since": pa.array([naive_utc(since)] * rows.num_rows, FILES.field("missing_since").type),
                }))
            return rows.num_rows

    def _delete_files(self, t: _Tx, rows: pa.Table) -> None:
        """Delete files rows (with ``$row_id`` and ``file_id``) and every child row of those files."""
        ids = rows["file_id"].combine_chunks()
        for name in FILE_TABLES[1:]:
            hits = t.select_in(name, ["file_id"], "file_id", ids, row_id=True)
            t.delete(name, hits[ROW_ID].combine_chunks())
        t.delete("files", rows[ROW_ID].combine_chunks())

    def apply_renames(self, old_paths: Sequence[str], new_paths: Sequence[str]) -> int:
        if len(old_paths) != len(new_paths):
            raise ValueError("apply_renames: old_paths and new_paths differ in length")
        if not len(old_paths):
            return 0
        with self._transaction("apply_renames", write=True) as t:
            self._delete_files(t, self._rows_of(t, old_paths))
            new = self._rows_of(t, new_paths)
            if new.num_rows:
                old_of = dict(zip(new_paths, old_paths, strict=True))
                t.table("files").update(pa.table({
                    ROW_ID: new[ROW_ID],
                    "renamed_from": pa.array([old_of[p] for p in new["file_path_normalized"].to_pylist()], pa.string()),
                }))
            return new.num_rows

    def prune(self, missing_before: dt.datetime, prefix: str = "") -> int:
        with self._transaction("prune", write=True) as t:
            tb = t.table("files")
            pred = tb["missing_since"] < naive_utc(missing_before)
            if prefix:
                pred = pred & tb["file_path_normalized"].startswith(prefix)
            rows = tb.select(columns=["file_id"], predicate=pred, internal_row_id=True).read_all()
            if rows.num_rows:
                self._delete_files(t, rows)
            return rows.num_rows

    def runs(self, status: str | None = None) -> pa.Table:
        return self.scan("crawl_runs", where={"status": status} if status else None)

    def search(self, vector: np.ndarray, k: int = 10, where: dict | None = None) -> pa.Table:
        """Top-k by inner product over a predicate-filtered select, ranked locally batch by batch."""
        vec = np.asarray(vector, dtype=np.float32).ravel()
        if vec.size != EMBEDDING_DIM:
            raise ValueError(f"search vector has {vec.size} values, expected {EMBEDDING_DIM}")
        pred = _predicate(FILES, where or {})
        if k <= 0 or pred is False:
            return SEARCH_SCHEMA.empty_table()
        best_paths: list = []
        best_ids: list = []
        best_scores: list = []
        with self._transaction("search") as t:
            tb = t.table("files")
            cols = ["file_path", "file_id", "metadata_embedding"]
            p = pred(tb) if pred is not None else None
            reader = _index_search(tb, vec, k, cols, p) or tb.select(columns=cols, predicate=p)
            for rb in reader:
                emb = rb.column("metadata_embedding")
                ok = pc.is_valid(emb)
                if not pc.all(ok).as_py():
                    rb = rb.filter(ok)
                    emb = rb.column("metadata_embedding")
                if rb.num_rows == 0:
                    continue
                scores = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, EMBEDDING_DIM) @ vec
                top = np.argsort(-scores, kind="stable")[:k]
                best_paths.append(pc.take(rb.column("file_path"), top))
                best_ids.append(pc.take(rb.column("file_id"), top))
                best_scores.append(pa.array(scores[top].astype(np.float64)))
        if not best_scores:
            return SEARCH_SCHEMA.empty_table()
        out = pa.table({"file_path": pa.concat_arrays(best_paths), "file_id": pa.concat_arrays(best_ids),
                        "score": pa.concat_arrays(best_scores)})
        return out.sort_by([("score", "descending"), ("file_path", "ascending")]).slice(0, k).cast(SEARCH_SCHEMA)

    def get_embedding(self, path: str) -> np.ndarray | None:
        with self._transaction("get_embedding") as t:
            rows = t.select("files", ["metadata_embedding"], lambda tb: tb["file_path_normalized"] == path)
        emb = rows["metadata_embedding"].drop_null() if rows.num_rows else None
        return emb[0].values.to_numpy().astype(np.float32) if emb is not None and len(emb) else None

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown catalog table {table!r} (known: {', '.join(TABLES)})")
        with self._transaction(f"count({table})") as t:
            reader = t.table(table).select(columns=[TABLES[table].names[0]])
            return sum(rb.num_rows for rb in reader)

    def query(self, sql: str, params: Sequence | None = None) -> pa.Table:
        raise NotSupported("raw SQL runs only on the embedded DuckDB catalog; VAST catalogs are read with "
                           "`similar`, or with VAST's own SQL engines (Trino, Spark) on the same tables")

    def close(self) -> None:
        self._session = None


def _index_search(tb, vec: np.ndarray, k: int, columns: list[str], predicate):
    """Candidates from VAST's own vector search, when the files table has a vector index and
    the ADBC driver (``vastdb[adbc]``) is installed; None otherwise (the caller scans).

    The candidates are rescored exactly by the caller, so the ranking does not depend on
    the index's distance convention for ``ip``. Only a live VAST 5.5+ cluster exercises
    this path (tests/test_vast_live.py); the loopback server has no vector indexes.
    """
    if getattr(tb, "vector_index", None) is None:
        return None
    from vastdb.transaction import NoAdbcConnectionError

    try:
        return tb.vector_search(vec=vec.tolist(), columns=columns, limit=k, predicate=predicate)
    except (NoAdbcConnectionError, ImportError):
        return None


def _set(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), values)



def _and(expr, rest, t):
    return expr if rest is None else expr & rest(t)


def _predicate(schema: pa.Schema, where: dict):
    """``where`` as a CNF predicate builder (AND of single-column ORs), ``None`` for all rows, ``False`` for none."""
    groups = []
    for col, value in where.items():
        if col not in schema.names:
            raise ValueError(f"unknown column {col!r}")
        if pa.types.is_nested(schema.field(col).type):
            raise ValueError(f"cannot filter on {col!r} ({schema.field(col).type})")
        values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        present = [v for v in values if v is not None]
        if not values:
            return False
        groups.append((col, present, len(present) < len(values)))
    if not groups:
        return None

    def build(t):
        expr = None
        for col, present, null in groups:
            terms = ([t[col].isin(present)] if len(present) > 1 else [t[col] == present[0]] if present else [])
            if null:
                terms.append(t[col].isnull())
            group = terms[0]
            for term in terms[1:]:
                group = group | term
            expr = group if expr is None else expr & group
        return expr

    return build
