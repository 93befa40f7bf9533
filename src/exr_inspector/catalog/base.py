"""The catalog contract: a narrow interface every backend implements.

Backends are chosen by URL, the way fsspec picks a filesystem: a plain path (or
``*.duckdb``) is the embedded DuckDB catalog, ``vast://BUCKET/SCHEMA`` is VAST
DataBase. Nothing outside ``catalog/`` imports ``duckdb`` or ``vastdb``.

The interface is shaped by what VAST's SDK can do (no joins in select, no unique
keys, predicates are ANDs of single-column ORs, requests of at most 5 MiB, vector
search by inner product), so both backends can implement all of it; DuckDB-only
conveniences (raw SQL) stay optional.
"""

from __future__ import annotations

import abc
import datetime as dt
import importlib
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..columnar import dedupe_rows, dedupe_values
from . import DEFAULT_CATALOG
from .schema import (
    CHANNEL_COLUMNS,
    CHANNEL_DEFS,
    CHANNEL_INDEX,
    CHILD_TABLES,
    FILES,
    FINGERPRINT_KEY,
    FINGERPRINTS,
    KEYED,
    SHARED_SCHEMAS,
    TABLES,
    VALUE_COLUMNS,
    VALUE_INDEX,
    key_vectors,
    validate_batch,
)

# What an incremental crawl needs to know about a file it finds on disk.
LOOKUP_COLUMNS = ("file_path_normalized", "size_bytes", "mtime_ns", "inode", "header_hash", "missing_since")
LOOKUP_SCHEMA = pa.schema([FILES.field(n) for n in LOOKUP_COLUMNS])


def naive_utc(t: dt.datetime) -> dt.datetime:
    """Timestamps are stored as naive UTC (see ``schema.TS``): aware ones are converted."""
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def run_origin() -> tuple[str, int]:
    """(host, pid) recorded with a run, so a later crawl can tell a dead run from a live one."""
    return socket.gethostname(), os.getpid()


class CatalogError(Exception):
    """The catalog cannot be opened, read or written. The CLI exits with code 3."""


class NotSupported(CatalogError):
    """The backend cannot do this (e.g. raw SQL on VAST)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class IngestBatch:
    """One batch of files for ``upsert``: the rows of every catalog table, all for the same files.

    ``files`` rows arrive with ``first_seen = last_inspected = now`` and
    ``inspection_count = 1``; the backend keeps the stored ``first_seen`` and
    counts up for files it already holds.

    A batch travels keyed (``schema.KEYED``): child rows name their file by
    ``file_index``; an attribute names its (name, value) by ``value_index`` into
    ``attribute_values`` and a channel its definition by ``channel_index`` into
    ``channel_defs``, each holding its distinct rows once; a definition names its
    fingerprint by ``fingerprint_key`` into ``fingerprints``. ``parts``,
    ``channels`` and ``attributes`` give the tables in their catalog schemas,
    built on first use, for backends that store them whole (VAST) and for
    readers; the DuckDB backend writes the keyed form.
    """

    def __init__(self, files: pa.Table, parts: pa.Table, channels: pa.Table, attributes: pa.Table,
                 errors: pa.Table, now: dt.datetime | None = None) -> None:
        """A batch from tables in the catalog schemas; every child row must belong to a file of ``files``."""
        given = {"parts": parts, "channels": channels, "attributes": attributes}
        for name, table in given.items():
            validate_batch(name, table)
        fingerprints, keyed_channels = _key_fingerprints(channels)
        value_index, values = dedupe_values(attributes)
        channel_index, defs = dedupe_rows(keyed_channels, CHANNEL_COLUMNS, CHANNEL_DEFS)
        keyed_attrs = attributes.drop_columns(list(VALUE_COLUMNS)).append_column(VALUE_INDEX, value_index)
        keyed_channels = keyed_channels.drop_columns(list(CHANNEL_COLUMNS)).append_column(CHANNEL_INDEX, channel_index)
        self._set(files, {"parts": _keyed(parts, files, "parts"), "channels": _keyed(keyed_channels, files, "channels"),
                          "attributes": _keyed(keyed_attrs, files, "attributes"), "fingerprints": fingerprints,
                          "attribute_values": values, "channel_defs": defs}, errors, now)
        self._logical.update(given)

    @classmethod
    def keyed(cls, files: pa.Table, tables: dict[str, pa.Table], errors: pa.Table,
              now: dt.datetime | None = None) -> IngestBatch:
        """A batch already in the keyed form (what the readers produce): ``tables`` has every
        name of ``KEYED_TABLES``."""
        batch = cls.__new__(cls)
        batch._set(files, tables, errors, now)
        return batch

    def _set(self, files, tables, errors, now) -> None:
        self.files = files
        self.children = {n: tables[n] for n in CHILD_TABLES}  # name -> keyed table (schema.KEYED)
        self.fingerprints = tables["fingerprints"]
        self.values = tables["attribute_values"]
        self.channel_defs = tables["channel_defs"]
        self.errors = errors  # crawl_errors rows
        self.now = now or _now()
        self._logical: dict[str, pa.Table] = {}

    def logical(self, name: str) -> pa.Table:
        """Child table ``name`` in its catalog schema: file_id, file_path, vectors and values put back."""
        if name not in self._logical:
            self._logical[name] = _expand(name, self.children[name], self)
        return self._logical[name]

    parts = property(lambda self: self.logical("parts"))
    channels = property(lambda self: self.logical("channels"))
    attributes = property(lambda self: self.logical("attributes"))

    def keyed_tables(self) -> dict[str, pa.Table]:
        """Every table of the batch as it travels (what a reader ships, what DuckDB writes)."""
        return {"files": self.files, **self.children, "fingerprints": self.fingerprints,
                "attribute_values": self.values, "channel_defs": self.channel_defs, "crawl_errors": self.errors}

    def tables(self) -> dict[str, pa.Table]:
        """Every table in its catalog schema."""
        return {"files": self.files, **{n: self.logical(n) for n in CHILD_TABLES}, "crawl_errors": self.errors}

    def rows(self, name: str) -> int:
        return self.files.num_rows if name == "files" else self.children[name].num_rows

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.keyed_tables().values())

    @property
    def num_files(self) -> int:
        return self.files.num_rows

    def checked_keys(self) -> pa.Array:
        """The files' keys, after refusing (CatalogError) a batch a backend must not write.

        Every table must match its schema exactly, every child row must name a file,
        a fingerprint and a value of the batch, and no file may appear twice: its
        child rows could not be told apart.
        """
        for name, table in self.keyed_tables().items():
            if not table.schema.equals(KEYED_SCHEMAS[name], check_metadata=False):
                raise CatalogError(f"upsert refused: batch for table {name!r} does not match its schema:\n"
                                   f"{table.schema}\nexpected:\n{KEYED_SCHEMAS[name]}")
        refs = [(name, "file_index", self.files.num_rows) for name in CHILD_TABLES]
        for name, column, n in [*refs, ("attributes", "value_index", self.values.num_rows),
                                ("channels", "channel_index", self.channel_defs.num_rows)]:
            idx = self.children[name][column]
            if idx.null_count or (len(idx) and (pc.min(idx).as_py() < 0 or pc.max(idx).as_py() >= n)):
                raise CatalogError(f"upsert refused: {name} rows name a {column} outside the batch's {n} rows")
        keys = self.channel_defs["fingerprint_key"]
        if keys.null_count < len(keys) and not pc.all(pc.is_in(keys.drop_null(), value_set=self.fingerprints[
                "fingerprint_key"].combine_chunks())).as_py():
            raise CatalogError("upsert refused: channel_defs name a fingerprint_key the batch does not carry")
        keys = self.files.column("file_path_normalized").combine_chunks()
        if pc.count_distinct(keys, mode="all").as_py() != len(keys):
            counts = pc.value_counts(keys)
            dups = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
            raise CatalogError(f"upsert refused: {len(dups)} file(s) appear more than once in the batch, e.g. {dups[0]}")
        return keys

    def with_errors(self, errors: pa.Table) -> IngestBatch:
        return IngestBatch.keyed(self.files, self.keyed_tables(), errors, self.now)

    @classmethod
    def concat(cls, batches: Sequence[IngestBatch]) -> IngestBatch:
        """One batch from many: file_index, value_index and channel_index shift by the rows before them."""
        parts: dict[str, list[pa.Table]] = {n: [] for n in CHILD_TABLES}
        files = values = defs = 0
        for b in batches:
            for name, t in b.children.items():
                t = _shift(t, "file_index", files)
                if name == "attributes":
                    t = _shift(t, "value_index", values)
                if name == "channels":
                    t = _shift(t, "channel_index", defs)
                parts[name].append(t)
            files += b.num_files
            values += b.values.num_rows
            defs += b.channel_defs.num_rows
        fps = pa.concat_tables([b.fingerprints for b in batches])
        _, first = np.unique(fps["fingerprint_key"].to_numpy(), return_index=True)
        tables = {n: pa.concat_tables(ts) for n, ts in parts.items()}
        tables["fingerprints"] = fps.take(np.sort(first))
        tables["attribute_values"] = pa.concat_tables([b.values for b in batches])
        tables["channel_defs"] = pa.concat_tables([b.channel_defs for b in batches])
        return cls.keyed(pa.concat_tables([b.files for b in batches]), tables,
                         pa.concat_tables([b.errors for b in batches]), max(b.now for b in batches))

    @classmethod
    def empty(cls) -> IngestBatch:
        return cls.keyed(FILES.empty_table(), {n: KEYED_SCHEMAS[n].empty_table() for n in KEYED_TABLES},
                         TABLES["crawl_errors"].empty_table())


KEYED_TABLES = (*CHILD_TABLES, "fingerprints", "attribute_values", "channel_defs")
KEYED_SCHEMAS = {"files": FILES, **KEYED, "fingerprints": FINGERPRINTS, **SHARED_SCHEMAS,
                 "crawl_errors": TABLES["crawl_errors"]}


def _shift(table: pa.Table, column: str, by: int) -> pa.Table:
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i), pc.add(table[column], pa.scalar(by, pa.int32())))


def _keyed(table: pa.Table, files: pa.Table, name: str) -> pa.Table:
    """A child table (fingerprints and values already keyed) -> keyed by file_index
    (ValueError if a row's file is absent)."""
    idx = pc.index_in(table["file_id"], value_set=files["file_id"].combine_chunks())
    if idx.null_count:
        raise ValueError(f"{name}: {idx.null_count} row(s) belong to no file of the batch")
    schema = KEYED[name]
    return pa.Table.from_arrays([idx.cast(pa.int32()), *[table[f.name] for f in list(schema)[1:]]], schema=schema)


def _key_fingerprints(channels: pa.Table) -> tuple[pa.Table, pa.Table]:
    """channels in the catalog schema -> (distinct fingerprints, channels with fingerprint_key)."""
    keys, vectors, distinct = key_vectors(channels["channel_fingerprint"])
    fps = pa.Table.from_arrays([pa.array(distinct), vectors], schema=FINGERPRINTS)
    i = channels.schema.get_field_index("channel_fingerprint")
    return fps, channels.set_column(i, FINGERPRINT_KEY, keys)


def _expand(name: str, keyed: pa.Table, batch: IngestBatch) -> pa.Table:
    """A keyed child table -> its catalog schema."""
    idx = keyed["file_index"]
    cols = {"file_id": pc.take(batch.files["file_id"], idx), "file_path": pc.take(batch.files["file_path"], idx)}
    if name == "channels":
        defs = batch.channel_defs.take(keyed["channel_index"])
        cols.update({c: defs[c] for c in CHANNEL_COLUMNS})
        pos = pc.index_in(defs["fingerprint_key"], value_set=batch.fingerprints["fingerprint_key"].combine_chunks())
        cols["channel_fingerprint"] = pc.take(batch.fingerprints["channel_fingerprint"], pos)
    if name == "attributes":
        values = batch.values.take(keyed["value_index"])
        cols.update({c: values[c] for c in VALUE_COLUMNS})
    schema = TABLES[name]
    return pa.Table.from_arrays([cols[f.name] if f.name in cols else keyed[f.name] for f in schema], schema=schema)


@dataclass
class UpsertStats:
    """What one upsert did, by ``file_path_normalized``."""

    inserted: int = 0  # new files
    replaced: int = 0  # files whose header changed
    unchanged: int = 0  # files whose header was the same (audit columns touched)
    errors: int = 0  # crawl_errors rows appended


class Catalog(abc.ABC):
    """A metadata catalog. Every method is safe to call from the single writer."""

    url: str
    #: How many writers may upsert at once, each through its own ``clone()``.
    parallel_writers: int = 1
    #: ``upsert_stream`` merges a batch at a time (memory: one batch, whatever the transaction's size).
    streaming: bool = False
    #: Files per transaction when the caller does not say: the size this backend writes best.
    batch_files: int = 10_000

    def clone(self) -> Catalog:
        """Another connection to the same catalog, for a concurrent writer."""
        raise NotSupported(f"{type(self).__name__} has a single writer")

    @abc.abstractmethod
    def ensure_schema(self) -> None:
        """Create missing tables (from ``schema.TABLES``) and record ``schema_version``. Idempotent."""

    @abc.abstractmethod
    def upsert(self, batch: IngestBatch) -> UpsertStats:
        """Write a whole batch in ONE transaction; on any failure none of it is visible.

        One current row set per ``file_path_normalized``: an unchanged header
        (same ``header_hash``) updates only the audit columns (``last_inspected``,
        ``inspection_count``, and the stat facts ``size_bytes``/``mtime``/
        ``mtime_ns``/``inode``); a changed header replaces the file's rows in every
        file table; a new file is inserted. ``crawl_errors`` rows are appended.
        """

    def upsert_stream(self, batches: Iterable[IngestBatch]) -> UpsertStats:
        """Write several batches (disjoint files) in ONE transaction, as ``upsert`` of their union.

        A backend that can merge a batch at a time overrides this so only one batch
        is held in memory; this default concatenates them.
        """
        return self.upsert(IngestBatch.concat(list(batches)) if batches else IngestBatch.empty())

    @abc.abstractmethod
    def lookup(self, paths: Sequence[str]) -> pa.Table:
        """Known files among ``paths`` (``LOOKUP_COLUMNS``): what an incremental crawl compares its stat with.

        Any number of paths; backends chunk or join so memory stays bounded by the request.
        """

    @abc.abstractmethod
    def iter_prefix(self, prefix: str, columns: Sequence[str], batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
        """Stream ``files`` rows whose ``file_path_normalized`` starts with ``prefix``, in bounded batches."""

    @abc.abstractmethod
    def scan(self, table: str, columns: Sequence[str] | None = None, where: dict | None = None) -> pa.Table:
        """Rows of a small selection: ``where`` as in ``search`` (AND of single-column IN lists)."""

    @abc.abstractmethod
    def touch(self, paths: Sequence[str] | pa.Array, now: dt.datetime) -> int:
        """Seen again, unchanged: ``last_inspected = now``, ``inspection_count + 1``, ``missing_since`` cleared."""

    @abc.abstractmethod
    def mark_missing(self, paths: Sequence[str] | pa.Array, since: dt.datetime) -> int:
        """Set ``missing_since`` on these files where it is not set yet; rows are kept. Returns files marked."""

    @abc.abstractmethod
    def apply_renames(self, old_paths: Sequence[str], new_paths: Sequence[str]) -> int:
        """In one transaction: drop each old path's rows from every file table, record it as the new row's
        ``renamed_from``. Returns renames applied."""

    @abc.abstractmethod
    def prune(self, missing_before: dt.datetime, prefix: str = "") -> int:
        """Delete, in one transaction, every file (and its child rows) missing since before ``missing_before``."""

    @abc.abstractmethod
    def runs(self, status: str | None = None) -> pa.Table:
        """``crawl_runs`` rows, optionally only those with ``status``."""

    @abc.abstractmethod
    def search(self, vector: np.ndarray, k: int = 10, where: dict | None = None) -> pa.Table:
        """The k files whose ``metadata_embedding`` has the largest inner product with ``vector``.

        Vectors are unit-norm, so this is cosine ranking. ``where`` maps a files
        column to a value or a list of values (an AND of single-column ORs, which
        VAST can push down). Returns file_path, file_id and ``score``, best first.
        """

    @abc.abstractmethod
    def get_embedding(self, path: str) -> np.ndarray | None:
        """The stored ``metadata_embedding`` of one file (by normalized path), or None."""

    @abc.abstractmethod
    def start_run(self, run_id: str, roots: Sequence[str], started_at: dt.datetime) -> None:
        """Record a ``crawl_runs`` row with status ``running``, this host and this process id."""

    @abc.abstractmethod
    def finish_run(self, run_id: str, status: str, counts: dict | None, finished_at: dt.datetime | None) -> None:
        """Close the run's row: ``completed``, ``failed`` or ``interrupted``, with its counts."""

    def query(self, sql: str) -> pa.Table:
        """Raw SQL, for the embedded catalog only."""
        raise NotSupported(f"{type(self).__name__} does not run raw SQL")

    @abc.abstractmethod
    def count(self, table: str) -> int:
        """Number of rows in a catalog table."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# protocol -> (module, class, install hint); imported only when that backend is used
_REGISTRY = {
    "duckdb": ("exr_inspector.catalog.duckdb", "DuckDBCatalog", "pip install duckdb"),
    "vast": ("exr_inspector.catalog.vast", "VastCatalog", "pip install vastdb"),
}

def open_catalog(url: str | None = None, **options) -> Catalog:
    """Open (and create if needed) the catalog at ``url``: a DuckDB file path by default."""
    url = url or DEFAULT_CATALOG
    proto = url.split("://", 1)[0] if "://" in url else "duckdb"
    if proto not in _REGISTRY:
        raise CatalogError(f"unknown catalog protocol {proto!r} in {url!r} (known: {', '.join(_REGISTRY)})")
    module, cls, hint = _REGISTRY[proto]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise CatalogError(f"the {proto} catalog backend is unavailable ({e}); {hint} to use {url!r}") from None
    return getattr(mod, cls)(url, **options)
