"""exr-inspector: crawl OpenEXR headers into a queryable catalog.

The public Python API is small: ``inspect`` a file or ``inspect_bytes`` a buffer and
get the payload dict (``schema_version`` 1) that ``exr-inspector inspect --json`` prints.
"""

from __future__ import annotations

import os

from .exr import ExrError, parse_bytes, read_header
from .payload import SCHEMA_VERSION, build_payload, canonical_json

__version__ = "0.1.0"
__all__ = ["SCHEMA_VERSION", "ExrError", "canonical_json", "inspect", "inspect_bytes", "__version__"]


def inspect(path: str | os.PathLike, *, native: bool | None = None) -> dict:
    """Parse every part's header of the file at ``path``. Raises ``ExrError``."""
    spath = os.fspath(path)
    fh = read_header(spath, native=native)
    return build_payload(fh.header, spath, fh.size_bytes, fh.mtime_ns)


def inspect_bytes(data: bytes, path: str | None = None, *, native: bool | None = None) -> dict:
    """Parse a header held in memory; ``path`` only labels the payload and errors."""
    try:
        header = parse_bytes(data, native=native)
    except ExrError as e:
        raise e.with_path(path) from None
    return build_payload(header, path, len(data), None)
