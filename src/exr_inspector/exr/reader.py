"""Read a file's header bytes and parse them, on the native path when it is available.

Only the header is read: 64 KiB first, grown while the header runs longer, never the
pixels. ``EXR_INSPECTOR_NATIVE=0`` forces the pure-Python reference path.
"""

from __future__ import annotations

import os
import stat
import warnings
from typing import NamedTuple

from .constants import DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_ITEMS, FIRST_READ_BYTES
from .errors import ExrError, NeedMore
from .header import parse_header

try:
    from .. import _core
except ImportError as exc:  # the extension failed to build: stay usable, but say so
    _core = None
    _IMPORT_ERROR: str | None = str(exc)
else:
    _IMPORT_ERROR = None

_warned = False
_env_native: bool | None = None  # EXR_INSPECTOR_NATIVE, read once: this sits on the per-file path


class FileHeader(NamedTuple):
    """A parsed header plus the stat facts read from the same open file.

    A format error (not ``io_error``) carries the same facts on the ExrError.
    """

    header: dict
    size_bytes: int
    mtime_ns: int
    inode: int


def native_available() -> bool:
    return _core is not None


def use_native(native: bool | None = None) -> bool:
    """Resolve the parser choice: explicit argument, then the environment, then availability."""
    global _warned, _env_native
    if native is None:
        if _env_native is None:
            flag = os.environ.get("EXR_INSPECTOR_NATIVE", "1").strip().lower()
            _env_native = flag not in ("0", "false", "no", "off")
        native = _env_native
    if native and _core is None:
        if not _warned:
            warnings.warn(
                f"exr-inspector native extension unavailable ({_IMPORT_ERROR}); using the slower Python parser",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned = True
        return False
    return native


def _error(t: tuple, path: str | None) -> ExrError:
    code, message, offset = t
    return ExrError(code, message, offset, path)


def parse_bytes(
    data: bytes,
    *,
    native: bool | None = None,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> dict:
    """Parse a header from bytes that hold the whole file (or at least its whole header)."""
    if use_native(native):
        r = _core.parse_bytes(data, max_header_bytes, max_items)
        if type(r) is tuple:
            raise _error(r, None)
        return r
    return parse_header(data, len(data), max_header_bytes=max_header_bytes, max_items=max_items)


def _read_upto(fd: int, n: int) -> bytes:
    """Read n bytes or until end of file, whichever comes first."""
    chunks = []
    while n > 0:
        chunk = os.read(fd, n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_python(path: str, max_header: int, max_items: int) -> FileHeader:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ExrError("io_error", f"cannot open file: {e.strerror}", None, path) from None
    try:
        try:
            st = os.fstat(fd)
        except OSError as e:
            raise ExrError("io_error", f"cannot read file: {e.strerror}", None, path) from None
        if not stat.S_ISREG(st.st_mode):
            raise ExrError("io_error", "not a regular file", None, path)
        total = st.st_size
        try:
            buf = _read_upto(fd, min(FIRST_READ_BYTES, total))
            if len(buf) < min(FIRST_READ_BYTES, total):
                total = len(buf)  # shrank since the stat
            while True:
                try:
                    header = parse_header(buf, total, max_header_bytes=max_header, max_items=max_items)
                    return FileHeader(header, st.st_size, st.st_mtime_ns, st.st_ino)
                except NeedMore as more:
                    want = min(max(more.needed, 2 * len(buf)), total, max_header)
                    extra = _read_upto(fd, want - len(buf))
                    buf += extra
                    if len(buf) < want:
                        total = len(buf)
        except OSError as e:
            raise ExrError("io_error", f"cannot read file: {e.strerror}", None, path) from None
        except ExrError as e:
            err = e.with_path(path)
            err.size_bytes, err.mtime_ns = st.st_size, st.st_mtime_ns
            raise err from None
    finally:
        os.close(fd)


def read_header(
    path: str | os.PathLike,
    *,
    native: bool | None = None,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> FileHeader:
    """Open ``path``, read just its header and parse it. Raises ``ExrError``."""
    if use_native(native):
        r, size, mtime_ns, inode = _core.parse_file(path, max_header_bytes, max_items)
        if type(r) is tuple:
            err = _error(r, os.fspath(path))
            if r[0] != "io_error":
                err.size_bytes, err.mtime_ns = size, mtime_ns
            raise err
        return FileHeader(r, size, mtime_ns, inode)
    return _read_python(os.fspath(path), max_header_bytes, max_items)
