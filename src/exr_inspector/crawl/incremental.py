"""What a re-crawl must parse, and what went missing: the walk's stat against the catalog.

A file whose ``(size, mtime_ns)`` equal the catalog's is not opened. The walk is
compared window by window (``lookup`` of a few thousand paths at a time), so
memory is bounded by the window, not the catalog. Seen paths are kept only as
sorted 64-bit hashes (8 bytes a file) for the missing-file pass at the end, which
streams the catalog's rows under each root (``iter_prefix``) and picks out those
not seen. A missing file whose inode, size and mtime reappear under a new path in
this run was renamed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..catalog.base import Catalog, naive_utc
from ..embed.kernels import hash_strings
from .walk import WalkChunk, Walker

WINDOW = 16384  # paths per catalog lookup: one round trip per window, bounded memory
_MISSING_COLUMNS = ["file_path_normalized", "missing_since", "inode", "size_bytes", "mtime_ns"]


@dataclass
class Changes:
    """What the walk found, before parsing: counts for the summary."""

    walked: int = 0
    skipped: int = 0  # unchanged by stat: not opened
    touched: int = 0  # unchanged and --touch: audit columns updated in bulk
    returned: int = 0  # were missing, are back unchanged: missing_since cleared
    missing: int = 0  # newly marked missing
    renamed: int = 0


class Incremental:
    """Turns the walk into chunks of paths to parse; ``finish`` then marks missing files and renames.

    ``full`` parses everything (still recording what was seen). ``touch`` updates
    ``last_inspected`` of unchanged files in bulk; by default a no-op re-crawl
    writes nothing but its run row.
    """

    def __init__(self, catalog: Catalog, walker: Walker, *, now: dt.datetime, full: bool = False,
                 touch: bool = False, chunk_size: int = 1024, window: int = WINDOW,
                 progress: Callable[[], None] | None = None) -> None:
        self.catalog = catalog
        self.walker = walker
        self.now = now
        self.full = full
        self.touch = touch
        self.chunk_size = chunk_size
        self.window = window
        self.progress = progress  # after each window: a no-op re-crawl parses nothing, yet runs long
        self.changes = Changes()
        self._seen: list[np.ndarray] = []

    def _windows(self) -> Iterator[WalkChunk]:
        """Windows of the walk. The first is one chunk, and each next one twice as large up to
        ``window``: the readers start on the first chunk while the walk goes on, instead of
        idling through a whole window's walk and stat (~45 ms on the bench tree)."""
        pending = WalkChunk()
        size = min(self.chunk_size, self.window)
        for chunk in self.walker.chunks(stat=True):
            for name in ("paths", "size", "mtime_ns", "inode"):
                getattr(pending, name).extend(getattr(chunk, name))
            if len(pending) >= size:
                yield pending
                pending = WalkChunk()
                size = min(2 * size, self.window)
        if len(pending):
            yield pending

    def chunks(self) -> Iterator[list[str]]:
        """Chunks of paths the readers must parse, in walk order. A window's remainder waits for
        the next window's: a nightly re-crawl's few changed files make full chunks, and each
        chunk costs the catalog a fixed ~15 statements however small it is."""
        pending: list[str] = []
        for w in self._windows():
            self.changes.walked += len(w)
            arr = pa.array(w.paths, pa.string())
            self._seen.append(hash_strings(arr))
            pending.extend(w.paths if self.full else self._plan(w, arr))
            if self.progress:
                self.progress()
            while len(pending) >= self.chunk_size:
                yield pending[:self.chunk_size]
                pending = pending[self.chunk_size:]
        if pending:
            yield pending

    def _plan(self, w: WalkChunk, arr: pa.Array) -> list[str]:
        known = self.catalog.lookup(arr)
        if known.num_rows == 0:
            return w.paths
        # Each walked path's row among the known ones (null: new), by a hash lookup, in walk order.
        pos = pc.index_in(arr, value_set=known["file_path_normalized"].combine_chunks())
        same = pc.fill_null(pc.and_(pc.equal(pa.array(w.size, pa.int64()), pc.take(known["size_bytes"], pos)),
                                    pc.equal(pa.array(w.mtime_ns, pa.int64()), pc.take(known["mtime_ns"], pos))),
                            False)
        back = pc.and_(same, pc.is_valid(pc.take(known["missing_since"], pos)))
        idx = np.flatnonzero(~same.to_numpy(zero_copy_only=False))
        self.changes.skipped += pc.sum(same).as_py() or 0
        returned = pc.filter(arr, back)
        if self.touch:
            unchanged = pc.filter(arr, same)
            self.changes.touched += self.catalog.touch(unchanged, self.now) if len(unchanged) else 0
        elif len(returned):
            self.catalog.touch(returned, self.now)
        self.changes.returned += len(returned)
        return [w.paths[i] for i in idx]

    def finish(self, progress: Callable[[], None] | None = None) -> None:
        """After every batch is committed: mark files not seen as missing, and apply renames."""
        seen = np.unique(np.concatenate(self._seen)) if self._seen else np.empty(0, np.uint64)
        gone: list[pa.RecordBatch] = []
        for root in self.walker.roots:
            for rb in self.catalog.iter_prefix(self.walker.prefix_of(root), _MISSING_COLUMNS):
                h = hash_strings(rb.column("file_path_normalized"))
                pos = np.minimum(np.searchsorted(seen, h), max(len(seen) - 1, 0))
                unseen = (seen[pos] != h) if len(seen) else np.ones(len(h), bool)
                unseen &= rb.column("missing_since").is_null().to_numpy(zero_copy_only=False)
                if unseen.any():
                    cand = rb.filter(pa.array(unseen))
                    keep = [self.walker.wanted(p) for p in cand.column("file_path_normalized").to_pylist()]
                    gone.append(cand.filter(pa.array(keep, pa.bool_())))
            if progress:
                progress()
        if not gone:
            return
        gone_t = pa.Table.from_batches(gone)
        if gone_t.num_rows == 0:
            return
        renames = self._renames(gone_t)
        if renames:
            old, new = zip(*renames, strict=True)
            self.changes.renamed = self.catalog.apply_renames(list(old), list(new))
            gone_t = gone_t.filter(pc.invert(pc.is_in(gone_t["file_path_normalized"], value_set=pa.array(old))))
        self.changes.missing = self.catalog.mark_missing(gone_t["file_path_normalized"], self.now)

    def _renames(self, gone: pa.Table) -> list[tuple[str, str]]:
        """(old, new) where a file first seen in this run has a gone file's inode, size and mtime."""
        inodes = [i for i in set(gone["inode"].to_pylist()) if i is not None]
        if not inodes:
            return []
        cols = ["file_path_normalized", "inode", "size_bytes", "mtime_ns", "first_seen", "missing_since"]
        found = self.catalog.scan("files", cols, where={"inode": inodes})
        fresh = {}
        for r in found.to_pylist():
            if r["missing_since"] is None and r["first_seen"] is not None and r["first_seen"] >= naive_utc(self.now):
                fresh.setdefault((r["inode"], r["size_bytes"], r["mtime_ns"]), r["file_path_normalized"])
        out = []
        for r in gone.to_pylist():
            new = fresh.pop((r["inode"], r["size_bytes"], r["mtime_ns"]), None)
            if new is not None and new != r["file_path_normalized"]:
                out.append((r["file_path_normalized"], new))
        return out

