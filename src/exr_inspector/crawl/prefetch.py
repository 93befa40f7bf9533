"""Read-ahead for cold trees: the kernel fetches the next chunks' headers while the readers parse.

On cold storage (NFS, parallel file systems, evicted pages) a reader waits for each of
its reads in turn, and its own read-ahead reaches only a few files further. Yet the storage
serves many reads at once: asking for 20,000 evicted bench files up front (``posix_fadvise``
WILLNEED) takes 0.3 s, and reading them afterwards 0.24 s, against 2.1 s for one cold read
after another. So each chunk, as it enters the reader pool, is handed to a thread that asks
for its files' first 64 KiB, a few chunks ahead of the readers.

A warm tree must not pay an open per file for that: the first files of each chunk are
checked with a non-blocking read (RWF_NOWAIT), and a chunk whose probes are all in the page
cache is left alone (~60 us a chunk). Only hints: nothing here can fail a crawl.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .walk import Walker

try:
    from .. import _core
except ImportError:  # pragma: no cover - the pure-Python install
    _core = None

PROBE = 8  # files checked per chunk before advising it
PREFETCH_BYTES = 65536  # what the scanner reads first
DEPTH = 16  # chunks queued for advice at most; past that a chunk goes unadvised (the pool holds fewer)
EARLY_FILES = 16384  # prefetch_walk's reach: the crawl's first lookup window


def advise(paths: Sequence[str], probe: int = PROBE, nbytes: int = PREFETCH_BYTES) -> int:
    """Ask the kernel to read ahead the first ``nbytes`` of each path, unless the first ``probe``
    that open are all cached (``probe`` 0: always). Returns how many paths were advised."""
    if _core is not None:
        return _core.prefetch(paths, probe, nbytes)
    return _advise_py(paths, probe, nbytes)


def _advise_py(paths: Sequence[str], probe: int, nbytes: int) -> int:
    """The same as the native ``prefetch``, one syscall at a time (slower, and holding the GIL between them)."""
    fadvise = getattr(os, "posix_fadvise", None)
    if fadvise is None:
        return 0
    cold, probed = probe <= 0, 0
    for p in paths:
        if cold or probed >= probe:
            break
        r = _resident(p)
        if r is None:
            continue
        probed += 1
        cold = not r
    if not cold:
        return 0
    advised = 0
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        except (OSError, TypeError, ValueError):
            continue
        try:
            with contextlib.suppress(OSError):
                fadvise(fd, 0, nbytes, os.POSIX_FADV_WILLNEED)
            advised += 1
        finally:
            os.close(fd)
    return advised


def _resident(path: str) -> bool | None:
    """Is the file's first byte cached? None if it cannot be opened; False if unknowable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, TypeError, ValueError):
        return None
    try:
        nowait = getattr(os, "RWF_NOWAIT", None)
        if nowait is None:
            return False
        try:
            os.preadv(fd, [bytearray(1)], 0, nowait)
        except OSError:  # BlockingIOError: not cached; anything else: cannot tell
            return False
        return True
    finally:
        os.close(fd)


class Prefetcher:
    """A thread that advises each chunk handed to it, in order; ``feed`` passes chunks through."""

    def __init__(self, depth: int = DEPTH) -> None:
        self.advised = 0
        self._queue: queue.Queue[list[str] | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="exr-inspector-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (paths := self._queue.get()) is not None:
            with contextlib.suppress(Exception):  # a hint: a failure here must not touch the crawl
                self.advised += advise(paths)

    def put(self, paths: list[str]) -> None:
        with contextlib.suppress(queue.Full):  # behind: this chunk goes without
            self._queue.put_nowait(paths)

    def feed(self, chunks: Iterable[list[str]]) -> Iterator[list[str]]:
        for paths in chunks:
            self.put(paths)
            yield paths

    def close(self) -> None:
        while True:  # drop what is still queued: the crawl is over
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prefetch_walk(walker: Walker, limit: int = EARLY_FILES) -> threading.Thread:
    """Advise the first ``limit`` files of ``walker``'s walk from a thread, starting now.

    For a crawl that will read every file it finds (a new catalog, ``--full``): the storage
    fetches them while the process imports pyarrow and DuckDB, opens the catalog and forks
    its readers, ~0.3 s in which no file is read. The first chunk found cached ends it (a
    warm tree). ``walker`` is the crawl's own walk options in a Walker of its own; its
    errors are left to the crawl's walk.
    """
    def run() -> None:
        advised = 0
        with contextlib.suppress(Exception):  # a hint: the crawl's own walk reports every problem
            for chunk in walker.chunks(stat=False):
                if not advise(chunk.paths):
                    return
                advised += len(chunk.paths)
                if advised >= limit:
                    return

    t = threading.Thread(target=run, name="exr-inspector-prefetch-walk", daemon=True)
    t.start()
    return t
