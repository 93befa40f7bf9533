"""Run the same input through both parsers and compare outcomes exactly."""

from __future__ import annotations

from exr_inspector.exr import ExrError, native_available, parse_bytes, read_header
from exr_inspector.payload import canonical_json

PARSERS = ["python", "native"]


def outcome_bytes(data: bytes, parser: str, **limits) -> tuple:
    """('ok', canonical json) or ('error', code, message, offset): comparable across parsers."""
    try:
        return ("ok", canonical_json(parse_bytes(data, native=parser == "native", **limits)))
    except ExrError as e:
        return ("error", e.code, e.message, e.offset)


def outcome_file(path, parser: str, **limits) -> tuple:
    try:
        fh = read_header(path, native=parser == "native", **limits)
        return ("ok", canonical_json(fh.header), fh.size_bytes, fh.mtime_ns, fh.inode)
    except ExrError as e:
        return ("error", e.code, e.message, e.offset, e.size_bytes, e.mtime_ns)


def require_native() -> None:
    import pytest

    if not native_available():
        pytest.fail("the native extension did not build; `make install` must build it")
