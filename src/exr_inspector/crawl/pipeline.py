"""The crawl: walk -> reader pool -> large batches -> catalog, with a run record and a summary.

One writer (this process) upserts large batches, each in one transaction. Memory
stays bounded whatever the tree size: chunks stream through the pool with a fixed
number in flight, and the writer flushes by size.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from ..catalog.base import Catalog, IngestBatch, UpsertStats, run_origin
from .batch import error_rows
from .incremental import Incremental
from .pool import ReaderPool, process_alive
from .prefetch import Prefetcher
from .walk import DEFAULT_EXTENSIONS, Walker

FLUSH_BYTES = 16 << 20  # Arrow data per transaction, for a backend that takes a transaction's batches at once
# Test hook for crash tests: SIGKILL this whole process right after the Nth batch commits.
FAULT_KILL_AFTER_BATCHES = "EXR_INSPECTOR_FAULT_KILL_AFTER_BATCHES"


@dataclass
class CrawlSummary:
    run_id: str
    roots: list[str]
    status: str = "running"
    files: int = 0  # headers parsed and written
    parts: int = 0
    channels: int = 0
    attributes: int = 0
    errors: int = 0  # files (and directories) that failed, all in crawl_errors
    inserted: int = 0  # new files
    replaced: int = 0  # changed headers
    unchanged: int = 0  # parsed (stat differed, or --full) but the header was the same
    skipped: int = 0  # unchanged by (size, mtime): not opened
    touched: int = 0  # --touch: skipped files whose last_inspected was updated
    returned: int = 0  # were missing, back unchanged
    missing: int = 0  # newly missing under the crawled roots (rows kept)
    renamed: int = 0  # missing files found again under a new path (same inode, size, mtime)
    walked: int = 0  # files the walk found (in this shard)
    stale_runs: int = 0  # earlier runs on this host found dead and marked interrupted
    batches: int = 0
    worker_restarts: int = 0
    seconds: float = 0.0
    files_per_s: float = 0.0
    error_codes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class _Writer:
    """The writers, on their own threads: upserts overlap with parsing (DuckDB and HTTP release the GIL).

    Chunks arrive one at a time; a writer gathers them into one transaction until
    ``batch_files`` files. A backend that merges a chunk at a time (``streaming``:
    DuckDB) holds one chunk, not the whole batch; others get the batch at most
    ``FLUSH_BYTES`` large. A backend that takes concurrent transactions (VAST) gets
    ``catalog.parallel_writers`` threads, each with its own connection. At most one
    chunk per writer waits, so memory stays bounded and a slow catalog slows the
    crawl down instead of piling chunks up.
    """

    def __init__(self, catalog: Catalog, summary: CrawlSummary, batch_files: int):
        self.summary = summary
        self.error: BaseException | None = None
        self.batch_files = batch_files
        self.batch_bytes = None if catalog.streaming else FLUSH_BYTES
        n = max(1, catalog.parallel_writers)
        self._catalogs = [catalog] + [catalog.clone() for _ in range(n - 1)]
        self._lock = threading.Lock()
        self._queue: queue.Queue[IngestBatch | None] = queue.Queue(maxsize=n)
        self._threads = [threading.Thread(target=self._run, args=(c,), name=f"exr-inspector-writer-{i}", daemon=True)
                         for i, c in enumerate(self._catalogs)]
        for t in self._threads:
            t.start()

    def _run(self, catalog: Catalog) -> None:
        state = {"end": False}
        try:
            while not state["end"] and (first := self._queue.get()) is not None:
                if self.error is not None:
                    continue  # another writer failed: drain, so the crawl never blocks
                codes: list[str] = []
                stats: UpsertStats = catalog.upsert_stream(self._gather(first, codes, state))
                self._account(stats, codes)
                pa.default_memory_pool().release_unused()  # the pool would keep the chunks' pages
        except BaseException as e:  # noqa: BLE001 - handed to the crawling thread
            with self._lock:
                self.error = self.error or e
            while not state["end"] and self._queue.get() is not None:
                pass

    def _gather(self, first: IngestBatch, codes: list[str], state: dict):
        """The chunks of one transaction: ``first``, then more from the queue up to the limits."""
        files = nbytes = 0
        item: IngestBatch | None = first
        while item is not None:
            codes.extend(item.errors["error_code"].to_pylist())
            files += item.num_files
            nbytes += item.nbytes
            yield item
            item = None
            if files >= self.batch_files or (self.batch_bytes is not None and nbytes >= self.batch_bytes):
                return
            item = self._queue.get()
            if item is None:
                state["end"] = True

    def _account(self, stats: UpsertStats, codes: list[str]) -> None:
        with self._lock:
            s = self.summary
            s.inserted += stats.inserted
            s.replaced += stats.replaced
            s.unchanged += stats.unchanged
            s.batches += 1
            for code in codes:
                s.error_codes[code] = s.error_codes.get(code, 0) + 1
            if os.environ.get(FAULT_KILL_AFTER_BATCHES) == str(s.batches):
                os.kill(os.getpid(), signal.SIGKILL)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, batch: IngestBatch) -> None:
        self._check()
        self._queue.put(batch)
        self._check()

    def _stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        for c in self._catalogs[1:]:
            c.close()

    def close(self) -> None:
        """Wait until every chunk is written; raise a writer's error if one failed."""
        self._stop()
        self._check()

    def abort(self) -> None:
        if any(t.is_alive() for t in self._threads):
            self.error = self.error or RuntimeError("crawl aborted")
            self._stop()


def crawl(
    roots: Sequence[str],
    catalog: Catalog,
    *,
    workers: int | None = None,
    excludes: Sequence[str] = (),
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    chunk_size: int = 1024,
    native: bool | None = None,
    pool: ReaderPool | None = None,
    progress: Callable[[CrawlSummary], None] | None = None,
    full: bool = False,
    touch: bool = False,
    shard: tuple[int, int] | None = None,
    max_depth: int | None = None,
    one_file_system: bool = False,
    batch_files: int | None = None,
    prefetch: bool = True,
) -> CrawlSummary:
    """Crawl ``roots`` into ``catalog``. Per-file failures become crawl_errors rows; the crawl goes on.

    Incremental unless ``full``: only new files and files whose (size, mtime) changed
    are parsed; after the last batch, catalogued files under the roots that were not
    seen are marked missing (renames recognised by inode). ``pool`` may be created by
    the caller before the catalog is opened (the pool forks, and forking after a
    database has started its threads is unsafe). ``prefetch``: on a cold tree, ask the kernel
    for each chunk's headers as it enters the pool (see ``prefetch.py``).
    """
    if batch_files is None:
        batch_files = catalog.batch_files
    chunk_size = max(1, min(chunk_size, batch_files))  # a batch is whole chunks
    walker = Walker(roots, excludes=excludes, extensions=extensions, chunk_size=chunk_size, shard=shard,
                    max_depth=max_depth, one_file_system=one_file_system)
    summary = CrawlSummary(run_id=uuid.uuid4().hex, roots=list(walker.roots))
    started = _now()
    t0 = time.perf_counter()
    own_pool = pool is None
    if pool is None:
        pool = ReaderPool(workers if workers is not None else (os.cpu_count() or 1), native=native)
    catalog.ensure_schema()
    summary.stale_runs = mark_dead_runs(catalog)
    catalog.start_run(summary.run_id, summary.roots, started)
    plan = Incremental(catalog, walker, now=started, full=full, touch=touch, chunk_size=chunk_size,
                       progress=lambda: report())
    walk_errors_seen = 0
    writer = _Writer(catalog, summary, batch_files)

    def walk_errors() -> None:
        nonlocal walk_errors_seen
        new = walker.errors[walk_errors_seen:]
        walk_errors_seen = len(walker.errors)
        if new:
            rows = error_rows([e.path for e in new], [e.code for e in new], [e.message for e in new], _now(),
                              summary.run_id)
            writer.put(IngestBatch.empty().with_errors(rows))

    def report() -> None:
        c = plan.changes
        summary.walked, summary.skipped, summary.touched, summary.returned = c.walked, c.skipped, c.touched, c.returned
        if progress:
            summary.seconds = time.perf_counter() - t0
            progress(summary)

    prefetcher = Prefetcher() if prefetch else None
    chunks = prefetcher.feed(plan.chunks()) if prefetcher else plan.chunks()
    try:
        for _paths, batch in pool.run(chunks, started, summary.run_id):
            summary.files += batch.files.num_rows
            summary.parts += batch.rows("parts")
            summary.channels += batch.rows("channels")
            summary.attributes += batch.rows("attributes")
            summary.errors += batch.errors.num_rows
            writer.put(batch)
            del batch
            walk_errors()
            report()
        summary.errors += len(walker.errors)
        walk_errors()
        writer.close()
        report()
        plan.finish()
        summary.missing, summary.renamed = plan.changes.missing, plan.changes.renamed
        summary.status = "completed"
    except KeyboardInterrupt:
        summary.status = "interrupted"
        writer.abort()
        raise
    except BaseException:
        summary.status = "failed"
        writer.abort()
        raise
    finally:
        if prefetcher:
            prefetcher.close()
        summary.worker_restarts = pool.restarts
        if own_pool:
            pool.close()
        summary.seconds = time.perf_counter() - t0
        summary.files_per_s = (summary.walked + len(walker.errors)) / summary.seconds if summary.seconds > 0 else 0.0
        try:
            catalog.finish_run(summary.run_id, summary.status, summary.to_dict(), _now())
        except Exception:  # noqa: BLE001 - the run's own failure is the error worth reporting
            if summary.status == "completed":
                raise
    return summary


def mark_dead_runs(catalog: Catalog) -> int:
    """Runs left ``running`` by a crawl on this host whose process is gone become ``interrupted``.

    A run on another host cannot be checked from here and is left alone: it may
    still be going (a shard of the same crawl).
    """
    host, _ = run_origin()
    stale = 0
    runs = catalog.runs("running")
    for run_id, run_host, pid in zip(runs["run_id"].to_pylist(), runs["host"].to_pylist(), runs["pid"].to_pylist(),
                                     strict=True):
        if run_host == host and pid is not None and not _crawler_alive(pid):
            catalog.finish_run(run_id, "interrupted", None, None)
            stale += 1
    return stale


def _crawler_alive(pid: int) -> bool:
    """Is ``pid`` a live exr-inspector process (not a recycled pid)?"""
    if not process_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return True  # no /proc: trust that the pid exists
    return b"exr_inspector" in cmd or b"exr-inspector" in cmd or pid == os.getpid()
