"""Byte-level builders for crafted EXR headers, so tests can state exactly what they feed the parser."""

from __future__ import annotations

import struct

MAGIC = b"\x76\x2f\x31\x01"


def attr(name: str | bytes, type_name: str | bytes, value: bytes, size: int | None = None) -> bytes:
    n = name.encode() if isinstance(name, str) else name
    t = type_name.encode() if isinstance(type_name, str) else type_name
    return n + b"\0" + t + b"\0" + struct.pack("<i", len(value) if size is None else size) + value


def chlist(*channels: tuple[str, int]) -> bytes:
    out = b""
    for name, ptype in channels:
        out += name.encode() + b"\0" + struct.pack("<iB3xii", ptype, 0, 1, 1)
    return out + b"\0"


def box2i(x0: int, y0: int, x1: int, y1: int) -> bytes:
    return struct.pack("<4i", x0, y0, x1, y1)


def required(width: int = 4, height: int = 3, compression: int = 0) -> list[bytes]:
    """The eight attributes every part must carry."""
    return [
        attr("channels", "chlist", chlist(("B", 1), ("G", 1), ("R", 1))),
        attr("compression", "compression", bytes([compression])),
        attr("dataWindow", "box2i", box2i(0, 0, width - 1, height - 1)),
        attr("displayWindow", "box2i", box2i(0, 0, width - 1, height - 1)),
        attr("lineOrder", "lineOrder", b"\0"),
        attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        attr("screenWindowCenter", "v2f", struct.pack("<2f", 0, 0)),
        attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
    ]


def single_part(extra: list[bytes] = (), flags: int = 0, version: int = 2, base: list[bytes] | None = None) -> bytes:
    """A single-part header followed by a fake 8-byte offset table."""
    attrs = required() if base is None else base
    return MAGIC + struct.pack("<I", version | flags) + b"".join(attrs) + b"".join(extra) + b"\0" + b"\0" * 8


def multipart(parts: list[list[bytes]], flags: int = 0x1000) -> bytes:
    body = b"".join(b"".join(p) + b"\0" for p in parts) + b"\0"
    return MAGIC + struct.pack("<I", 2 | flags) + body + b"\0" * 8


def part_attrs(name: str, ptype: str = "scanlineimage", view: str | None = None) -> list[bytes]:
    out = required() + [
        attr("name", "string", name.encode()),
        attr("type", "string", ptype.encode()),
        attr("chunkCount", "int", struct.pack("<i", 1)),
    ]
    if view is not None:
        out.append(attr("view", "string", view.encode()))
    return out
