"""Walk crawl roots with ``os.scandir``: absolute, normalised paths of candidate files, in chunks.

Symlinked directories are followed once: a directory already seen (same device
and inode) is skipped, so symlink loops end. Excluded globs match the full path
or the base name. Directories that cannot be listed become error records, never
an exception that stops the crawl.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import xxhash

try:
    from .. import _core
except ImportError:  # the native extension failed to build: the Python path still works
    _core = None

DEFAULT_EXTENSIONS = (".exr",)


@dataclass
class WalkError:
    path: str
    code: str
    message: str


@dataclass
class WalkChunk:
    """Paths with the stat facts an incremental crawl compares (-1 where stat failed: parse it)."""

    paths: list[str] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    mtime_ns: list[int] = field(default_factory=list)
    inode: list[int] = field(default_factory=list)

    def add(self, path: str, st: os.stat_result | None) -> None:
        self.paths.append(path)
        self.size.append(st.st_size if st else -1)
        self.mtime_ns.append(st.st_mtime_ns if st else -1)
        self.inode.append(st.st_ino if st else -1)

    def __len__(self) -> int:
        return len(self.paths)


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 0 <= K < N: this process takes the directories whose path hash is K mod N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected K/N, e.g. 3/16") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text!r}: need 0 <= K < N (shards are numbered from 0, like Slurm array ids)")
    return k, n


def shard_of(directory: str, n: int) -> int:
    """The shard owning a directory's files: a stable hash of its normalised path (never Python's hash())."""
    return xxhash.xxh64_intdigest(directory.encode("utf-8", "surrogateescape")) % n


@dataclass
class Walker:
    """Yields chunks of candidate files; ``errors`` collects what could not be listed.

    ``shard=(k, n)`` keeps only the files of directories whose ``shard_of`` is k
    (every process still descends the whole tree, which costs a listing, not a
    stat, per directory). ``max_depth`` counts directory levels below a root (0:
    the root's own files). ``one_file_system`` does not cross into other mounts.
    """

    roots: Sequence[str]
    excludes: Sequence[str] = ()
    extensions: Sequence[str] = DEFAULT_EXTENSIONS
    chunk_size: int = 2048
    shard: tuple[int, int] | None = None
    max_depth: int | None = None
    one_file_system: bool = False
    errors: list[WalkError] = field(default_factory=list)
    dirs_seen: int = 0

    def __post_init__(self) -> None:
        self.roots = _outermost(normalize(r) for r in self.roots)
        pats = [fnmatch.translate(p) for p in self.excludes]
        self._exclude = re.compile("|".join(pats)) if pats else None
        self._ext = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in self.extensions)

    def _excluded(self, path: str, name: str) -> bool:
        ex = self._exclude
        return ex is not None and (ex.match(path) is not None or ex.match(name) is not None)

    def prefix_of(self, root: str) -> str:
        """The catalog key prefix of everything under ``root`` (a root that is a file is its own prefix)."""
        return root if root.lower().endswith(self._ext) else root.rstrip(os.sep) + os.sep

    def wanted(self, path: str) -> bool:
        """Would a walk reach this (catalogued) file? Extension, excludes, shard and depth; not its existence."""
        name = os.path.basename(path)
        if not name.lower().endswith(self._ext) or self._excluded(path, name):
            return False
        parent = os.path.dirname(path)
        if self.shard is not None and shard_of(parent, self.shard[1]) != self.shard[0]:
            return False
        root = next((r for r in self.roots if path == r or path.startswith(r.rstrip(os.sep) + os.sep)), None)
        if root is None:
            return False
        if any(self._excluded(d, os.path.basename(d)) for d in _between(root, parent)):
            return False
        if self.max_depth is not None and root != path:
            depth = parent[len(root):].count(os.sep)
            return depth <= self.max_depth
        return True

    def __iter__(self) -> Iterator[list[str]]:
        for chunk in self.chunks(stat=False):
            yield chunk.paths

    def chunks(self, stat: bool = True) -> Iterator[WalkChunk]:
        """Chunks of files in walk order (depth-first by sorted directory name), each stat'ed if ``stat``.

        With the native module and no --exclude, each directory is listed, classified and
        stat'ed in C (``_core.list_dir``); otherwise by ``os.scandir`` here."""
        chunk = WalkChunk()
        paths, sizes, mtimes, inodes = chunk.paths, chunk.size, chunk.mtime_ns, chunk.inode
        chunk_size = self.chunk_size
        native = _core is not None and self._exclude is None and all(e.isascii() for e in self._ext)
        exts = tuple(e.encode() for e in self._ext)
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[str, int, int]] = []  # (directory, depth, device)
        for root in self.roots:
            try:
                st = os.stat(root)
            except OSError as e:
                self.errors.append(WalkError(root, "io_error", f"{root}: cannot read crawl root: {e.strerror}"))
                continue
            if os.path.isdir(root):
                stack.append((root, 0, st.st_dev))
            elif self.wanted(root):  # a file named as a root: the same filters (and shard) as a walked one
                chunk.add(root, st if stat else None)
        while stack:
            d, depth, dev = stack.pop()
            try:
                st = os.stat(d)
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                if self.one_file_system and st.st_dev != dev:
                    continue
                self.dirs_seen += 1
                mine = self.shard is None or shard_of(d, self.shard[1]) == self.shard[0]
                if native:  # list, classify by d_type and stat in C: the hot loop of a no-op re-crawl
                    listing = _core.list_dir(d, exts, mine, stat)
                else:
                    with os.scandir(d) as it:
                        entries = list(it)  # files in directory order; subdirectories are sorted below
            except OSError as e:
                self.errors.append(WalkError(d, "io_error", f"{d}: cannot list directory: {e.strerror}"))
                continue
            if native:
                names, subdirs, st = listing
                st = np.frombuffer(st, np.int64).reshape(-1, 3) if stat else None
                if self.max_depth is not None and depth >= self.max_depth:
                    subdirs = []
                subdirs = [os.path.join(d, sd) for sd in subdirs]
                if names and not (d.isascii() and "".join(names).isascii()):
                    names, st = self._utf8_names(d, names, st)
            else:
                names, subdirs, st = self._classify(d, entries, depth, mine, stat)
            if names:
                prefix = d + os.sep if d != os.sep else d
                start = 0
                while start < len(names):
                    take = min(len(names) - start, chunk_size - len(paths))
                    paths.extend(prefix + n for n in names[start:start + take])
                    if stat:
                        sizes.extend(st[start:start + take, 0].tolist())
                        mtimes.extend(st[start:start + take, 1].tolist())
                        inodes.extend(st[start:start + take, 2].tolist())
                    start += take
                    if len(paths) >= chunk_size:
                        yield chunk
                        chunk = WalkChunk()
                        paths, sizes, mtimes, inodes = chunk.paths, chunk.size, chunk.mtime_ns, chunk.inode
            subdirs.sort()
            stack.extend((sd, depth + 1, dev) for sd in reversed(subdirs))  # depth-first, in name order
        if chunk:
            yield chunk

    def _bad_path(self, path: str) -> None:
        self.errors.append(WalkError(path, "bad_path", f"{path!r}: file name is not valid UTF-8"))

    def _utf8_names(self, d: str, names: list[str], st: np.ndarray | None) -> tuple[list[str], np.ndarray | None]:
        """Names that are valid UTF-8; the others become bad_path errors."""
        keep = [_utf8(os.path.join(d, n)) for n in names]
        for n, ok in zip(names, keep, strict=True):
            if not ok:
                self._bad_path(os.path.join(d, n))
        return [n for n, ok in zip(names, keep, strict=True) if ok], None if st is None else st[np.array(keep, bool)]

    def _classify(self, d: str, entries: list, depth: int, mine: bool,
                  stat: bool) -> tuple[list[str], list[str], np.ndarray | None]:
        """(wanted file names, subdirectories, stats): the Python walk, used with --exclude or
        without the native module."""
        ex, ext = self._exclude, self._ext
        subdirs: list[str] = []
        names: list[str] = []
        ascii_dir = d.isascii()
        for entry in entries:
            name = entry.name
            if ex is not None and (ex.match(entry.path) is not None or ex.match(name) is not None):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks; loops are cut by `seen`
            except OSError:
                is_dir = False
            if is_dir:
                if self.max_depth is None or depth < self.max_depth:
                    subdirs.append(entry.path)
            elif mine and name.lower().endswith(ext):
                if not (name.isascii() and ascii_dir) and not _utf8(entry.path):
                    self._bad_path(entry.path)
                    continue
                names.append(name)
        return names, subdirs, stat_names(d, names) if stat and names else None


def stat_names(directory: str, names: list[str]) -> np.ndarray:
    """(size, mtime_ns, inode) of each name in ``directory`` as int64 rows, -1 where stat failed.

    Native: fstatat() relative to the open directory, GIL released. Python: os.stat().
    """
    if _core is not None:
        return np.frombuffer(_core.stat_names(directory, names), np.int64).reshape(-1, 3)
    out = np.full((len(names), 3), -1, np.int64)
    for i, name in enumerate(names):
        try:
            st = os.stat(os.path.join(directory, name))
        except OSError:
            continue
        out[i] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def _between(root: str, directory: str) -> list[str]:
    """The directories from just below ``root`` down to ``directory``."""
    out = []
    while directory != root and directory.startswith(root):
        out.append(directory)
        directory = os.path.dirname(directory)
    return out


def _outermost(roots) -> list[str]:
    """Drop roots inside other roots (and repeats): every file is then reached once."""
    kept: list[str] = []
    for r in sorted(set(roots)):
        if not any(r.startswith(k.rstrip(os.sep) + os.sep) for k in kept):
            kept.append(r)
    return kept


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes from the filesystem (surrogateescape)
        return False


def normalize(path: str) -> str:
    """Absolute, normalised, case preserved (never lowercased): the catalog's file key."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))
