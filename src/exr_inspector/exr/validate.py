"""Judge a decoded header: parsing only decodes, these checks only warn.

Runs on the parse result of either parser, so both paths get the same warnings.
Each check is small and flat, in the manner of OpenEXRCore's ``validate_*`` chain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from .constants import (
    DEEP_PART_TYPES,
    ENUM_TYPES,
    FLAG_LONG_NAMES,
    FLAG_MULTIPART,
    FLAG_NON_IMAGE,
    FLAG_TILED,
    PART_TYPES,
    REQUIRED_ATTRIBUTES,
    SHARED_ATTRIBUTES,
    SHORT_NAME_BYTES,
    TILED_PART_TYPES,
)


def first(attrs: list[dict], name: str, type_name: str | None = None):
    """Value of the first attribute called ``name`` (of ``type_name`` if given), else None."""
    for a in attrs:
        if a["name"] == name and (type_name is None or a["type"] == type_name):
            return a["value"]
    return None


def part_type(attrs: list[dict], flags: int) -> str:
    """Storage type of a part: its ``type`` attribute when valid, else what the flags imply."""
    t = first(attrs, "type", "string")
    if t in PART_TYPES:
        return t
    if flags & FLAG_MULTIPART:
        return "scanlineimage"
    if flags & FLAG_NON_IMAGE:
        return "deeptile" if first(attrs, "tiles", "tiledesc") is not None else "deepscanline"
    return "tiledimage" if flags & FLAG_TILED else "scanlineimage"


def _w(code: str, message: str, part_index: int | None) -> dict:
    return {"code": code, "message": message, "part_index": part_index, "offset": None}


def _check_part(i: int, attrs: list[dict], flags: int) -> Iterator[dict]:
    counts = Counter(a["name"] for a in attrs)
    for name, n in counts.items():
        if n > 1:
            yield _w("duplicate_attribute", f"attribute '{name}' appears {n} times; the first is used", i)
    types = {}
    for a in attrs:
        types.setdefault(a["name"], a["type"])
        name, t, v = a["name"], a["type"], a["value"]
        if len(name.encode("utf-8", "surrogateescape")) > SHORT_NAME_BYTES and not flags & FLAG_LONG_NAMES:
            yield _w("long_name", f"attribute name '{name}' is longer than {SHORT_NAME_BYTES} bytes "
                     "but the long-names flag is not set", i)
        if t == "rational" and v[1] == 0:
            yield _w("rational_zero_denominator", f"attribute '{name}', type 'rational': denominator is 0", i)
        if t in ENUM_TYPES and v.startswith("UNKNOWN_"):
            yield _w("unknown_enum", f"attribute '{name}', type '{t}': unknown value {v[8:]}", i)
        if t == "chlist":
            for ch in v:
                if ch["type"].startswith("UNKNOWN_"):
                    yield _w("unknown_enum", f"channel '{ch['name']}': unknown pixel type {ch['type'][8:]}", i)
                if ch["x_sampling"] < 1 or ch["y_sampling"] < 1:
                    yield _w("bad_sampling", f"channel '{ch['name']}': sampling "
                             f"{ch['x_sampling']}x{ch['y_sampling']} must be at least 1", i)
    required = dict(REQUIRED_ATTRIBUTES)
    ptype = part_type(attrs, flags)
    if ptype in TILED_PART_TYPES:
        required["tiles"] = "tiledesc"
    # Real single-part deep files (OpenEXR's own samples) carry no name and no
    # maxSamplesPerPixel, and Core reads them, so neither is demanded there.
    if flags & FLAG_MULTIPART:
        required["name"] = "string"
    if flags & (FLAG_MULTIPART | FLAG_NON_IMAGE):
        required.update({"type": "string", "chunkCount": "int"})
    if ptype in DEEP_PART_TYPES:
        required["version"] = "int"
    for name, t in required.items():
        if name not in types:
            yield _w("missing_required", f"required attribute '{name}' ({t}) is missing", i)
        elif types[name] != t:
            yield _w("unexpected_type", f"attribute '{name}' has type '{types[name]}', expected '{t}'", i)
    declared = first(attrs, "type", "string")
    if declared is not None and declared not in PART_TYPES:
        yield _w("invalid_part_type", f"part type '{declared}' is not one of {', '.join(PART_TYPES)}", i)
    if not flags & FLAG_MULTIPART and declared in PART_TYPES:
        flag_tiled = bool(flags & FLAG_TILED)
        if (declared in TILED_PART_TYPES) != flag_tiled or (declared in DEEP_PART_TYPES) != bool(flags & FLAG_NON_IMAGE):
            yield _w("type_flags_mismatch", f"part type '{declared}' disagrees with version flags 0x{flags:x}", i)


def validate(header: dict) -> list[dict]:
    """Warnings about a decoded header; empty for a well-formed file."""
    flags = header["flags"]
    parts = header["parts"]
    out: list[dict] = []
    if not parts:
        out.append(_w("no_parts", "the file declares no parts", None))
    for i, attrs in enumerate(parts):
        out.extend(_check_part(i, attrs, flags))
    if len(parts) > 1:
        # a name that is not UTF-8 is kept as {"base64": ...}: compare its canonical form
        names = Counter(str(first(a, "name", "string")) for a in parts if first(a, "name", "string") is not None)
        for name, n in names.items():
            if n > 1:
                out.append(_w("duplicate_part_name", f"part name '{name}' is used by {n} parts", None))
        for shared in SHARED_ATTRIBUTES:
            values = [first(a, shared) for a in parts]
            if any(v != values[0] for v in values[1:]):
                out.append(_w("shared_attribute_mismatch", f"attribute '{shared}' differs between parts", None))
    return out
