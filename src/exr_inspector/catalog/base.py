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
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import FILES, TABLES, validate_batch

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


@dataclass
class IngestBatch:
    """One batch of files for ``upsert``: a table per catalog table, all for the same files.

    ``files`` rows arrive with ``first_seen = last_inspected = now`` and
    ``inspection_count = 1``; the backend keeps the stored ``first_seen`` and
    counts up for files it already holds.
    """

    files: pa.Table
    parts: pa.Table
    channels: pa.Table
    attributes: pa.Table
    errors: pa.Table  # crawl_errors rows
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))

    def tables(self) -> dict[str, pa.Table]:
        return {
            "files": self.files,
            "parts": self.parts,
            "channels": self.channels,
            "attributes": self.attributes,
            "crawl_errors": self.errors,
        }

    @property
    def num_files(self) -> int:
        return self.files.num_rows

    def checked_keys(self) -> pa.Array:
        """The files' keys, after refusing (CatalogError) a batch a backend must not write.

        Every table must match its schema exactly, and no file may appear twice:
        its child rows could not be told apart.
        """
        for name, table in self.tables().items():
            try:
                validate_batch(name, table)
            except TypeError as e:
                raise CatalogError(f"upsert refused: {e}") from e
        keys = self.files.column("file_path_normalized").combine_chunks()
        if pc.count_distinct(keys, mode="all").as_py() != len(keys):
            counts = pc.value_counts(keys)
            dups = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
            raise CatalogError(f"upsert refused: {len(dups)} file(s) appear more than once in the batch, e.g. {dups[0]}")
        return keys

    def with_errors(self, errors: pa.Table) -> IngestBatch:
        return IngestBatch(self.files, self.parts, self.channels, self.attributes, errors, self.now)

    @classmethod
    def concat(cls, batches: Sequence[IngestBatch]) -> IngestBatch:
        """One batch from many: the writer upserts large batches, not chunk-sized ones."""
        tables = {k: pa.concat_tables([b.tables()[k] for b in batches]) for k in batches[0].tables()}
        return cls(tables["files"], tables["parts"], tables["channels"], tables["attributes"],
                   tables["crawl_errors"], max(b.now for b in batches))

    @classmethod
    def empty(cls) -> IngestBatch:
        e = {name: TABLES[name].empty_table() for name in ("files", "parts", "channels", "attributes", "crawl_errors")}
        return cls(e["files"], e["parts"], e["channels"], e["attributes"], e["crawl_errors"])


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

DEFAULT_CATALOG = "exr_catalog.duckdb"


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
