"""Attribute value decoders: raw value bytes -> canonical JSON value.

This is the reference the C decoder (``native/exr_decode.c``) must equal, value for
value and warning for warning. A decoder never raises on bad bytes: it returns
``DROP`` (the attribute is left out, as non-strict OpenEXRCore does) or a partial
value, and records a warning.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

from .constants import (
    ENUM_TYPES,
    FIXED_SIZES,
    LEVEL_MODE_NAMES,
    MAX_NAME_BYTES,
    PIXEL_TYPE_NAMES,
    ROUNDING_MODE_NAMES,
    enum_name,
)
from .errors import ExrError

DROP = object()


class DecodeContext:
    """Collects warnings and counts decoded items against the memory budget."""

    def __init__(self, max_items: int):
        self.warnings: list[dict] = []
        self.items = 0
        self.max_items = max_items
        self.part_index = 0
        self.offset = 0  # offset of the attribute being decoded

    def warn(self, code: str, message: str) -> None:
        self.warnings.append(
            {"code": code, "message": message, "part_index": self.part_index, "offset": self.offset}
        )

    def count(self, n: int) -> None:
        """Charge n decoded items against the budget that bounds memory."""
        self.items += n
        if self.items > self.max_items:
            raise ExrError(
                "header_too_large", f"header has more than {self.max_items} attributes and values", self.offset
            )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_name(data: bytes, ctx: DecodeContext, what: str) -> str:
    """Names must be text; invalid UTF-8 is kept readable with backslash escapes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        ctx.warn("non_utf8_name", f"{what} is not valid UTF-8")
        return data.decode("utf-8", "backslashreplace")


def decode_text(data: bytes, ctx: DecodeContext, name: str, type_name: str) -> Any:
    """String values keep their exact bytes when they are not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        ctx.warn("non_utf8_string", f"attribute '{name}', type '{type_name}': not valid UTF-8; kept as base64")
        return {"base64": b64(data)}


def _floats(fmt: str, raw: bytes) -> list:
    return list(struct.unpack(fmt, raw))


def _matrix(raw: bytes, n: int, code: str) -> list:
    flat = struct.unpack(f"<{n * n}{code}", raw)
    return [list(flat[i * n:(i + 1) * n]) for i in range(n)]


def _box(raw: bytes, code: str) -> dict:
    x0, y0, x1, y1 = struct.unpack(f"<4{code}", raw)
    return {"min": [x0, y0], "max": [x1, y1]}


def _chromaticities(raw: bytes) -> dict:
    v = struct.unpack("<8f", raw)
    return {"red": [v[0], v[1]], "green": [v[2], v[3]], "blue": [v[4], v[5]], "white": [v[6], v[7]]}


def _keycode(raw: bytes) -> dict:
    keys = ("film_mfc_code", "film_type", "prefix", "count", "perf_offset", "perfs_per_frame", "perfs_per_count")
    return dict(zip(keys, struct.unpack("<7i", raw), strict=True))


def _tiledesc(raw: bytes) -> dict:
    x, y, mode = struct.unpack("<IIB", raw)
    return {
        "x_size": x,
        "y_size": y,
        "level_mode": enum_name(LEVEL_MODE_NAMES, mode & 0x0F),
        "rounding_mode": enum_name(ROUNDING_MODE_NAMES, mode >> 4),
    }


def _timecode(raw: bytes) -> dict:
    t, u = struct.unpack("<II", raw)
    return {"time_and_flags": t, "user_data": u}


def _rational(raw: bytes) -> list:
    n, d = struct.unpack("<iI", raw)
    return [n, d]


_FIXED: dict[str, Callable[[bytes], Any]] = {
    "box2i": lambda r: _box(r, "i"),
    "box2f": lambda r: _box(r, "f"),
    "chromaticities": _chromaticities,
    "double": lambda r: struct.unpack("<d", r)[0],
    "float": lambda r: struct.unpack("<f", r)[0],
    "int": lambda r: struct.unpack("<i", r)[0],
    "keycode": _keycode,
    "m33f": lambda r: _matrix(r, 3, "f"),
    "m33d": lambda r: _matrix(r, 3, "d"),
    "m44f": lambda r: _matrix(r, 4, "f"),
    "m44d": lambda r: _matrix(r, 4, "d"),
    "rational": _rational,
    "tiledesc": _tiledesc,
    "timecode": _timecode,
    "v2i": lambda r: _floats("<2i", r),
    "v2f": lambda r: _floats("<2f", r),
    "v2d": lambda r: _floats("<2d", r),
    "v3i": lambda r: _floats("<3i", r),
    "v3f": lambda r: _floats("<3f", r),
    "v3d": lambda r: _floats("<3d", r),
}
for _t, _names in ENUM_TYPES.items():
    _FIXED[_t] = lambda r, _n=_names: enum_name(_n, r[0])


def _chlist(raw: bytes, ctx: DecodeContext, name: str) -> Any:
    channels = []
    p, n = 0, len(raw)
    while True:
        if p >= n:
            ctx.warn("bad_chlist", f"attribute '{name}', type 'chlist': list is not terminated")
            break
        end = raw.find(b"\0", p, min(n, p + MAX_NAME_BYTES + 1))
        if end < 0:
            ctx.warn("bad_chlist", f"attribute '{name}', type 'chlist': channel name at value byte {p} is unterminated or too long")
            break
        if end == p:
            if p + 1 != n:
                ctx.warn("bad_chlist", f"attribute '{name}', type 'chlist': {n - p - 1} bytes after the list terminator")
            break
        cname = decode_name(raw[p:end], ctx, "channel name")
        p = end + 1
        if p + 16 > n:
            ctx.warn("bad_chlist", f"attribute '{name}', type 'chlist': channel '{cname}' is truncated")
            break
        ptype, plinear, xs, ys = struct.unpack_from("<iB3xii", raw, p)
        p += 16
        ctx.count(1)
        channels.append({
            "name": cname,
            "type": enum_name(PIXEL_TYPE_NAMES, ptype),
            "p_linear": plinear != 0,
            "x_sampling": xs,
            "y_sampling": ys,
        })
    return channels


def _stringvector(raw: bytes, ctx: DecodeContext, name: str) -> Any:
    out = []
    p, n = 0, len(raw)
    while p < n:
        if p + 4 > n:
            ctx.warn("bad_stringvector", f"attribute '{name}', type 'stringvector': truncated entry length at value byte {p}")
            break
        (length,) = struct.unpack_from("<i", raw, p)
        p += 4
        if length < 0 or length > n - p:
            ctx.warn("bad_stringvector", f"attribute '{name}', type 'stringvector': entry length {length} at value byte {p - 4} is out of range")
            break
        ctx.count(1)
        out.append(decode_text(raw[p:p + length], ctx, name, "stringvector"))
        p += length
    return out


def _floatvector(raw: bytes, ctx: DecodeContext, name: str) -> Any:
    if len(raw) % 4:
        ctx.warn("bad_attribute_size", f"attribute '{name}', type 'floatvector': invalid size {len(raw)} (not a multiple of 4); dropped")
        return DROP
    ctx.count(len(raw) // 4)
    return _floats(f"<{len(raw) // 4}f", raw)


def _preview(raw: bytes, ctx: DecodeContext, name: str) -> Any:
    if len(raw) < 8:
        ctx.warn("bad_attribute_size", f"attribute '{name}', type 'preview': invalid size {len(raw)} (expected at least 8); dropped")
        return DROP
    w, h = struct.unpack_from("<II", raw)
    if len(raw) != 8 + 4 * w * h:
        ctx.warn("bad_preview", f"attribute '{name}', type 'preview': {w}x{h} pixels need {8 + 4 * w * h} bytes, found {len(raw)}")
    return {"width": w, "height": h}


def _bytes(raw: bytes, ctx: DecodeContext, name: str) -> Any:
    if len(raw) < 4:
        ctx.warn("bad_attribute_size", f"attribute '{name}', type 'bytes': invalid size {len(raw)} (expected at least 4); dropped")
        return DROP
    (hint_len,) = struct.unpack_from("<I", raw)
    if hint_len > len(raw) - 4:
        ctx.warn("bad_bytes", f"attribute '{name}', type 'bytes': type hint length {hint_len} exceeds the value; kept raw")
        return {"type": "bytes", "base64": b64(raw)}
    hint = decode_name(raw[4:4 + hint_len], ctx, "bytes type hint")
    return {"type": "bytes", "type_hint": hint, "base64": b64(raw[4 + hint_len:])}


_VARIABLE: dict[str, Callable[[bytes, DecodeContext, str], Any]] = {
    "chlist": _chlist,
    "stringvector": _stringvector,
    "floatvector": _floatvector,
    "preview": _preview,
    "bytes": _bytes,
    "string": lambda r, c, n: decode_text(r, c, n, "string"),
}


def decode_value(type_name: str, raw: bytes, ctx: DecodeContext, name: str) -> Any:
    """Canonical JSON value of one attribute, or DROP."""
    size = FIXED_SIZES.get(type_name)
    if size is not None:
        if len(raw) != size:
            ctx.warn("bad_attribute_size", f"attribute '{name}', type '{type_name}': invalid size {len(raw)} (expected {size}); dropped")
            return DROP
        return _FIXED[type_name](raw)
    decoder = _VARIABLE.get(type_name)
    if decoder is not None:
        return decoder(raw, ctx, name)
    return {"type": type_name, "base64": b64(raw)}
