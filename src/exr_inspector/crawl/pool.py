"""The reader pool: worker processes turn chunks of paths into catalog batches.

Each worker scans a whole chunk natively (no per-file Python objects), computes
the chunk's embeddings in bulk and returns Arrow tables. A worker that dies
(a crash, the OOM killer, SIGKILL) never loses files: every chunk that was in the
pool becomes a suspect and is rerun alone on a fresh pool; a suspect that kills
its reader again, alone, is split in halves, and a single file that does becomes
a ``worker_died`` error row. Innocent files are never blamed.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import gc
import glob
import multiprocessing as mp
import os
import signal
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import pyarrow as pa

from ..catalog.base import IngestBatch
from ..embed import SIGNATURE_NAMES, VectorCache
from ..embed.kernels import warm_up
from .batch import build_batch, error_rows
from .columns import scan_chunk

# Fault injection for the crash tests: a worker SIGKILLs itself on a chunk holding a
# path that contains this text (once only, if FAULT_ONCE names a marker file).
FAULT_KILL = "EXR_INSPECTOR_FAULT_KILL"
FAULT_ONCE = "EXR_INSPECTOR_FAULT_ONCE"
READER_NICE = 10  # added to a reader's niceness (see _worker_init)


@dataclass
class Task:
    paths: list[str]
    suspect: bool = False  # was in the pool when a worker died: rerun alone to find the culprit


def _maybe_die(paths: list[str]) -> None:
    needle = os.environ.get(FAULT_KILL)
    if not needle or not any(needle in p for p in paths):
        return
    marker = os.environ.get(FAULT_ONCE)
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


# This process's vectors by signature: a reader embeds each AOV layout once, not once a chunk.
_VECTORS = VectorCache()


def process_parts(paths: list[str], now: dt.datetime, run_id: str, native: bool | None) -> Iterator[IngestBatch]:
    """Scan, embed and shape one chunk: one batch, or several when the scanner stops early
    (``MAX_CHUNK_BYTES``), so a chunk of huge headers never sits in memory at once."""
    _maybe_die(paths)
    rest = paths
    while rest:
        raw = scan_chunk(rest, native=native, signature_names=SIGNATURE_NAMES)
        yield build_batch(raw, now, run_id, _VECTORS)
        rest = rest[raw.consumed:] if raw.consumed is not None else []


def process_chunk(paths: list[str], now: dt.datetime, run_id: str, native: bool | None) -> IngestBatch:
    """Scan, embed and shape one chunk into one batch."""
    batches = list(process_parts(paths, now, run_id, native))
    if len(batches) == 1:
        return batches[0]
    return IngestBatch.concat(batches) if batches else IngestBatch.empty()


# Results travel as Arrow IPC streams in a file on tmpfs, mapped by the parent: no pickling
# of megabytes through a pipe, no copy on the receiving side, exact schemas kept.
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_TABLES = ("files", "parts", "channels", "attributes", "fingerprints", "attribute_values", "channel_defs",
           "crawl_errors")
# Tables left on the mapping (the bulk: the mapping goes once they are written); one buffer
# of the others kept alive would keep the whole mapping.
_MAPPED = ("parts", "channels", "attributes", "attribute_values", "channel_defs")


SPOOL_STALE_S = 600  # a dead reader's spool file this old is nobody's (see sweep_stale_spools)


def _spool_prefix(run_id: str) -> str:
    return os.path.join(_SHM, f"exr-inspector-{run_id}-")


def _unlink(paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _discard(fut: Future) -> None:
    """A result nobody will read (the crawl stopped early): remove its spool files, which
    would otherwise stay in shared memory until the machine reboots."""
    if not fut.cancelled() and fut.exception() is None:
        _unlink(path for path, _sizes, _now in fut.result())


def sweep_stale_spools(max_age_s: float = SPOOL_STALE_S) -> int:
    """Remove spool files left by readers of a crawl killed outright (SIGKILL, power cut):
    their reader is gone (the pid in the name) and the file is older than ``max_age_s``.
    Another live crawl's files always have a live reader. Returns how many went."""
    removed = 0
    now = time.time()
    for path in glob.glob(os.path.join(_SHM, "exr-inspector-*-*-*.arrows")):
        try:
            pid = int(os.path.basename(path).split("-")[3])
            if now - os.stat(path).st_mtime < max_age_s or process_alive(pid):
                continue
            os.unlink(path)
            removed += 1
        except (ValueError, IndexError, OSError):
            continue
    return removed


def process_alive(pid: int) -> bool:
    """Is ``pid`` a running process? A zombie is not: a killed crawl's readers are reparented
    to init, which may reap them late, and kill(pid, 0) still succeeds on them."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, someone else's
    return True


def _to_spool(batch: IngestBatch, prefix: str) -> tuple[str, list[int], dt.datetime]:
    path = f"{prefix}{os.getpid()}-{uuid.uuid4().hex}.arrows"
    sizes = []
    with pa.OSFile(path, "wb") as sink:
        for name in _TABLES:
            table = batch.keyed_tables()[name]
            start = sink.tell()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            sizes.append(sink.tell() - start)
    return path, sizes, batch.now


def _from_spool(payload: tuple[str, list[int], dt.datetime]) -> IngestBatch:
    path, sizes, now = payload
    try:
        mm = pa.memory_map(path)  # the mapping outlives the unlinked file until its buffers are freed
    finally:
        os.unlink(path)
    buf = mm.read_buffer()
    t, offset = {}, 0
    for name, size in zip(_TABLES, sizes, strict=True):
        piece = buf.slice(offset, size)
        if name not in _MAPPED:  # copied: a catalog may hold these until its transaction ends
            piece = pa.py_buffer(piece.to_pybytes())
        t[name] = pa.ipc.open_stream(piece).read_all()
        offset += size
    return IngestBatch.keyed(t["files"], t, t["crawl_errors"], now)


def _work(paths: list[str], now: dt.datetime, run_id: str, native: bool | None) -> list:
    """Runs in a worker process: each batch of the chunk travels keyed (see IngestBatch), spooled
    as soon as it is built."""
    prefix = _spool_prefix(run_id)
    return [_to_spool(batch, prefix) for batch in process_parts(paths, now, run_id, native)]


def freeze_heap() -> None:
    """Move everything allocated so far (numba, pyarrow, duckdb: hundreds of thousands of
    objects) out of the garbage collector's reach. Without this, every full collection
    walks that whole heap, and the crawl spends most of its main thread in the collector.
    Forked readers inherit the frozen heap, and fork's copy-on-write pages stay shared.
    """
    gc.collect()
    gc.freeze()


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and shuts the pool down
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the CLI's SIGTERM-as-Ctrl-C is for the parent only
    # A reader must not outlive a crawl killed with SIGKILL: siblings keep the task pipe open,
    # so an orphan would wait forever (and hold the crawl's stdout open). Linux only.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)
    # Readers yield the CPU to the writer: the crawl's throughput is the writer's, and a writer
    # starved by its own readers builds a backlog it must clear alone after the last chunk
    # (measured on 2 cores: 5-7% off the crawl; niceness 5 to 19 within noise of each other).
    with contextlib.suppress(OSError):
        os.nice(READER_NICE)


def died_rows(paths: list[str], now: dt.datetime, run_id: str, code: str = "worker_died",
              why: str = "the reader process died while parsing this file") -> pa.Table:
    """Error rows for files whose reader failed as a whole, so none of them is silently lost."""
    return error_rows(paths, [code] * len(paths), [f"{p}: {why}" for p in paths], now, run_id)


class ReaderPool:
    """Parses chunks in ``workers`` processes (0: in this process), at most ``3 * workers`` in flight."""

    def __init__(self, workers: int, *, native: bool | None = None):
        self.workers = workers
        self.native = native
        self.restarts = 0
        self._run_ids: set[str] = set()
        self._executor: ProcessPoolExecutor | None = None
        if workers > 0:
            sweep_stale_spools()
            self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        """Start every worker now, by fork: they inherit the imports and the compiled kernels.

        Starting them here, before the caller opens a database (whose threads a fork
        would leave behind half-copied), and not lazily at the first submit.
        """
        warm_up()
        # pyarrow and DuckDB import numpy.ma at their first NumPy conversion: ~10 ms that every
        # reader and the crawl's first window would pay, once here instead.
        import numpy.ma  # noqa: F401
        freeze_heap()
        ex = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"), initializer=_worker_init, initargs=(os.getpid(),))
        # With fork, the first submit starts every worker at once (synchronously): no need to wait.
        ex.submit(int).result()
        return ex

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            gc.unfreeze()  # hand the heap back to the collector (and to interpreter shutdown)
        for run_id in self._run_ids:  # partial files of a reader that died mid-write
            _unlink(glob.glob(_spool_prefix(run_id) + "*"))
        self._run_ids.clear()

    def __enter__(self) -> ReaderPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, chunks: Iterable[list[str]], now: dt.datetime, run_id: str) -> Iterator[tuple[list[str], IngestBatch]]:
        """Yield (paths, batch) for every chunk, in completion order; every path comes back exactly once."""
        if self._executor is None:
            for paths in chunks:
                for batch in process_parts(paths, now, run_id, self.native):
                    yield paths, batch
            return
        self._run_ids.add(run_id)
        running: dict[Future, Task] = {}
        try:
            yield from self._run(chunks, now, run_id, running)
        finally:  # stopped early (a failed crawl, Ctrl-C): results still coming are nobody's
            for fut in running:
                if not fut.cancel():
                    fut.add_done_callback(_discard)

    def _run(self, chunks: Iterable[list[str]], now: dt.datetime, run_id: str,
             running: dict[Future, Task]) -> Iterator[tuple[list[str], IngestBatch]]:
        source = iter(chunks)
        fresh: deque[Task] = deque()  # never ran: handed back when the pool died before they started
        suspects: deque[Task] = deque()
        exhausted = False
        while True:
            orphans: list[Task] = []
            if suspects:  # suspects run one at a time, so a crash can be pinned on its cause
                if not running:
                    _unlink(glob.glob(_spool_prefix(run_id) + "*"))  # left by a worker that died mid-write
                    task = suspects.popleft()
                    if not self._submit(task, running, now, run_id):
                        orphans.append(task)
            else:
                while len(running) < 3 * self.workers:
                    if fresh:
                        task = fresh.popleft()
                    elif not exhausted:
                        try:
                            task = Task(next(source))
                        except StopIteration:
                            exhausted = True
                            continue
                    else:
                        break
                    if not self._submit(task, running, now, run_id):
                        orphans.append(task)
                        break
            if orphans:  # a worker died after its last result: everything still in the pool is suspect
                for task in orphans:
                    (suspects if task.suspect else fresh).appendleft(task)
                suspects.extend(Task(t.paths, True) for t in running.values())
                running.clear()
                self._restart()
                continue
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken: list[Task] = []
            for fut in done:
                task = running.pop(fut)
                try:
                    results = [_from_spool(payload) for payload in fut.result()]
                except BrokenProcessPool:
                    broken.append(task)
                    continue
                except Exception as e:  # noqa: BLE001 - a reader bug must not stop a facility-wide crawl
                    results = [IngestBatch.empty().with_errors(
                        died_rows(task.paths, now, run_id, "internal_error", f"reader failed: {type(e).__name__}: {e}"))]
                for result in results:
                    yield task.paths, result
            if not broken:
                continue
            # The pool is unusable: every chunk still in it failed with it.
            broken.extend(running.values())
            running.clear()
            self._restart()
            if len(broken) == 1 and broken[0].suspect:  # it ran alone: it is the cause
                task = broken[0]
                if len(task.paths) > 1:
                    half = len(task.paths) // 2
                    suspects.extendleft([Task(task.paths[half:], True), Task(task.paths[:half], True)])
                else:
                    yield task.paths, IngestBatch.empty().with_errors(died_rows(task.paths, now, run_id))
            else:
                suspects.extend(Task(t.paths, True) for t in broken)

    def _submit(self, task: Task, running: dict, now: dt.datetime, run_id: str) -> bool:
        """Hand a task to the pool; False if the pool already broke (a worker died meanwhile)."""
        try:
            running[self._executor.submit(_work, task.paths, now, run_id, self.native)] = task
        except BrokenProcessPool:
            return False
        return True

    def _restart(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._new_executor()
        self.restarts += 1
