"""Pure-Python reference parser: the executable spec of the header format.

``parse_header`` walks the attribute lists of every part in a byte prefix of a file.
It raises ``ExrError`` for headers that cannot be read, and ``NeedMore`` when the
header runs past the prefix while the file is longer, so the reader can grow its
buffer and call again. The native scanner must produce exactly the same result.

Result shape (also what ``_core.parse_bytes`` returns)::

    {"version": 2, "flags": 0x200, "header_size": 345,
     "parts": [[{"name": ..., "type": ..., "value": ...}, ...], ...],
     "warnings": [{"code", "message", "part_index", "offset"}, ...]}
"""

from __future__ import annotations

import struct

from .constants import (
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_ITEMS,
    FLAG_MULTIPART,
    FLAG_NON_IMAGE,
    FLAG_TILED,
    FORMAT_VERSION,
    KNOWN_FLAGS,
    MAGIC,
    MAX_NAME_BYTES,
)
from .errors import ExrError, NeedMore
from .values import DROP, DecodeContext, decode_name, decode_value


class _Scanner:
    def __init__(self, buf: bytes, total: int, max_header: int):
        self.buf = buf
        self.total = total
        self.max_header = max_header

    def need(self, end: int, offset: int) -> None:
        """Ask for more bytes; callers have already ruled out end-of-file."""
        if end > self.max_header:
            raise ExrError("header_too_large", f"header is larger than the {self.max_header} byte limit", offset)
        raise NeedMore(end)

    def cstr(self, pos: int, too_long: str, ends: str) -> tuple[bytes, int]:
        """A NUL-terminated name of at most 255 bytes starting at pos."""
        buf = self.buf
        window = min(len(buf), pos + MAX_NAME_BYTES + 1)
        end = buf.find(b"\0", pos, window)
        if end >= 0:
            return buf[pos:end], end + 1
        if pos + MAX_NAME_BYTES + 1 <= len(buf):
            raise ExrError("bad_attribute", too_long, pos)
        if len(buf) >= self.total:
            raise ExrError("truncated", ends, pos)
        self.need(min(pos + MAX_NAME_BYTES + 1, self.total), pos)
        raise AssertionError("unreachable")


def parse_header(
    buf: bytes,
    total_size: int | None = None,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> dict:
    """Parse every part's header from ``buf``, a prefix of a file of ``total_size`` bytes."""
    buf = bytes(buf)
    total = len(buf) if total_size is None else total_size
    if total < 4:
        raise ExrError("not_exr", f"not an OpenEXR file: {total} bytes is too short", 0)
    if buf[:4] != MAGIC:
        raise ExrError("not_exr", "not an OpenEXR file: bad magic number", 0)
    if total < 8:
        raise ExrError("truncated", "file ends inside the version field", 4)
    sc = _Scanner(buf, total, max_header_bytes)
    if len(buf) < 8:
        sc.need(8, 4)
    (vfield,) = struct.unpack_from("<I", buf, 4)
    version, flags = vfield & 0xFF, vfield & ~0xFF
    if version != FORMAT_VERSION:
        raise ExrError("unsupported_version", f"unsupported OpenEXR format version {version}", 4)
    if flags & ~KNOWN_FLAGS:
        raise ExrError("unsupported_version", f"unknown version flags 0x{flags & ~KNOWN_FLAGS:x}", 4)
    if flags & FLAG_TILED and flags & (FLAG_NON_IMAGE | FLAG_MULTIPART):
        raise ExrError(
            "unsupported_version",
            f"invalid version flags 0x{flags:x}: single-part tiled cannot be combined with deep or multipart",
            4,
        )

    ctx = DecodeContext(max_items)
    multipart = bool(flags & FLAG_MULTIPART)
    parts: list[list[dict]] = []
    pos = 8
    while True:
        attrs: list[dict] = []
        seen = 0  # attributes read, dropped ones included: only a truly empty header ends a multipart list
        ctx.part_index = len(parts)
        while True:
            start = pos
            raw_name, pos = sc.cstr(pos, "attribute name is longer than 255 bytes", "file ends inside an attribute name")
            if not raw_name:
                break
            ctx.offset = start
            name = decode_name(raw_name, ctx, "attribute name")
            type_at = pos
            raw_type, pos = sc.cstr(
                pos,
                f"type name of attribute '{name}' is longer than 255 bytes",
                f"file ends inside the type name of attribute '{name}'",
            )
            if not raw_type:
                raise ExrError("bad_attribute", f"attribute '{name}' has an empty type name", type_at)
            type_name = decode_name(raw_type, ctx, "attribute type name")
            if pos + 4 > total:
                raise ExrError("truncated", f"file ends inside the size of attribute '{name}'", pos)
            if pos + 4 > len(buf):
                sc.need(pos + 4, pos)
            (size,) = struct.unpack_from("<i", buf, pos)
            if size < 0:
                raise ExrError("bad_attribute", f"attribute '{name}', type '{type_name}': negative size {size}", pos)
            end = pos + 4 + size
            if end > total:
                raise ExrError(
                    "truncated",
                    f"attribute '{name}', type '{type_name}': size {size} runs past the end of the file ({total} bytes)",
                    pos,
                )
            if end > len(buf):
                sc.need(end, pos)
            ctx.count(1)
            seen += 1
            value = decode_value(type_name, buf[pos + 4:end], ctx, name)
            pos = end
            if value is not DROP:
                attrs.append({"name": name, "type": type_name, "value": value})
        if multipart and not seen:
            break
        parts.append(attrs)
        if not multipart:
            break
    return {
        "version": version,
        "flags": flags,
        "header_size": pos,
        "parts": parts,
        "warnings": ctx.warnings,
    }
