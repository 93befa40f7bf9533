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

DEFAULT_EXTENSIONS = (".exr",)


@dataclass
class WalkError:
    path: str
    code: str
    message: str


@dataclass
class Walker:
    """Yields lists of file paths; ``errors`` collects what could not be listed."""

    roots: Sequence[str]
    excludes: Sequence[str] = ()
    extensions: Sequence[str] = DEFAULT_EXTENSIONS
    chunk_size: int = 2048
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

    def __iter__(self) -> Iterator[list[str]]:
        chunk: list[str] = []
        seen: set[tuple[int, int]] = set()
        stack: list[str] = []
        for root in self.roots:
            try:
                st = os.stat(root)
            except OSError as e:
                self.errors.append(WalkError(root, "io_error", f"{root}: cannot read crawl root: {e.strerror}"))
                continue
            if os.path.isdir(root):
                stack.append(root)
            elif root.lower().endswith(self._ext) and not self._excluded(root, os.path.basename(root)):
                chunk.append(root)
            del st
        while stack:
            d = stack.pop()
            try:
                st = os.stat(d)
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                self.dirs_seen += 1
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                self.errors.append(WalkError(d, "io_error", f"{d}: cannot list directory: {e.strerror}"))
                continue
            subdirs = []
            for entry in entries:
                path = entry.path
                if self._excluded(path, entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows symlinks; loops are cut by `seen`
                except OSError:
                    is_dir = False
                if is_dir:
                    subdirs.append(path)
                elif entry.name.lower().endswith(self._ext):
                    if not path.isascii() and not _utf8(path):
                        self.errors.append(WalkError(path, "bad_path", f"{path!r}: file name is not valid UTF-8"))
                        continue
                    chunk.append(path)
                    if len(chunk) >= self.chunk_size:
                        yield chunk
                        chunk = []
            stack.extend(reversed(subdirs))  # depth-first, in name order
        if chunk:
            yield chunk


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
