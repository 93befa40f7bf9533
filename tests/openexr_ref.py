"""Reference view of EXR headers, taken from the OpenEXR Python binding.

The parity tests compare our parser against OpenEXR itself. The binding hands
back Python/numpy/pybind objects; this module maps them onto the canonical
attribute form our parser emits (``{"name", "type", "value"}``), infers the EXR
type name the binding hides, and provides :func:`compare_part`.

Binding quirks handled here (OpenEXR 3.5.3):

* The binding invents a ``type`` attribute for parts whose file has none, maps
  a ``type`` string it dislikes (``weirdimage``, ``deeptiled``, or one that
  contradicts the version flags) to the flag-derived storage, and fills
  required attributes that Core dropped as malformed with ``Imf::Header``
  defaults (64x64 displayWindow, pixelAspectRatio 1, ...). A minimal raw walk
  of the header (names, type names and sizes only) tells which attributes and
  which ``type`` string the file really holds; binding-invented entries are
  marked ``"synthesized": True`` and are optional in the comparison, and a
  rewritten ``type`` carries the raw string as value (``binding_value`` keeps
  the binding's).
* An empty list could be a stringvector or a floatvector; the raw walk gives the
  real type name (falls back to ``"floatvector|stringvector"``).
* ``TimeCode.timeAndFlags`` needs an unexported ``Packing`` enum, so the TV60
  packed word is rebuilt from the BCD fields (lossless for valid BCD only).
* Rationals come back normalised (48/2 -> 24/1); compared by value.
* Pixel types are hidden header-only; the channel ``type`` is ``None`` unless
  filled from a full read (:func:`reference_channel_types`).
* ``IDManifest`` comes back decoded; its raw bytes are not exposed, so its value
  is ``None`` and not compared.
"""

from __future__ import annotations

import base64
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR

__all__ = ["compare_part", "reference_channel_types", "reference_parts"]

_MAGIC = 20000630
_MULTIPART_FLAG = 0x1000
_RAW_LIMIT = 16 * 1024 * 1024  # headers with big previews are < 1 MiB; be generous
_MAX_FULL_READ_SAMPLES = 256 * 1024 * 1024  # refuse pixel reads above ~0.5-1 GiB

_COMPRESSION_NAMES = {"NO": "NONE"}
_LEVEL_MODES = {"ONE_LEVEL": "ONE_LEVEL", "MIPMAP_LEVELS": "MIPMAP", "RIPMAP_LEVELS": "RIPMAP"}
_ROUNDING = {"ROUND_DOWN": "DOWN", "ROUND_UP": "UP"}
_PIXEL_TYPES = {"HALF": "HALF", "FLOAT": "FLOAT", "UINT": "UINT"}
_DTYPE_PIXEL = {np.dtype(np.float16): "HALF", np.dtype(np.float32): "FLOAT", np.dtype(np.uint32): "UINT"}
_VEC_TYPES = {
    (np.dtype(np.int32), (2,)): "v2i",
    (np.dtype(np.int32), (3,)): "v3i",
    (np.dtype(np.float32), (2,)): "v2f",
    (np.dtype(np.float32), (3,)): "v3f",
    (np.dtype(np.float64), (1,)): "double",
    (np.dtype(np.float64), (2,)): "v2d",
    (np.dtype(np.float64), (3,)): "v3d",
    (np.dtype(np.float32), (3, 3)): "m33f",
    (np.dtype(np.float64), (3, 3)): "m33d",
    (np.dtype(np.float32), (4, 4)): "m44f",
    (np.dtype(np.float64), (4, 4)): "m44d",
}
_FLOAT_SPELLINGS = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


# --------------------------------------------------------------------------- raw walk
def _cstr(data: bytes, pos: int) -> tuple[str, int] | None:
    end = data.find(b"\0", pos)
    if end < 0:
        return None
    return data[pos:end].decode("utf-8", "surrogateescape"), end + 1


def _raw_headers(path: str | Path) -> list[dict[str, tuple[str, bytes]]] | None:
    """Per part ``{name: (type_name, value_bytes)}`` from the file bytes, or None.

    Deliberately minimal (no value decoding): it only exists to undo binding
    artefacts (invented/normalised ``type``, ambiguous empty lists).
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(_RAW_LIMIT)
    except OSError:
        return None
    if len(data) < 8 or int.from_bytes(data[:4], "little", signed=True) != _MAGIC:
        return None
    multipart = bool(int.from_bytes(data[4:8], "little") & _MULTIPART_FLAG)
    pos, parts = 8, []
    while True:
        attrs: dict[str, tuple[str, bytes]] = {}
        while True:
            if pos >= len(data):
                return None
            if data[pos] == 0:
                pos += 1
                break
            got = _cstr(data, pos)
            if got is None:
                return None
            name, pos = got
            got = _cstr(data, pos)
            if got is None or pos + 4 > len(data):
                return None
            type_name, pos = got
            size = int.from_bytes(data[pos : pos + 4], "little", signed=True)
            pos += 4
            if size < 0 or pos + size > len(data):
                return None
            attrs[name] = (type_name, data[pos : pos + size])
            pos += size
        parts.append(attrs)
        if not multipart or pos >= len(data) or data[pos] == 0:
            return parts


# --------------------------------------------------------------------------- conversion
def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _timecode(tc: Any) -> dict[str, int]:
    """Rebuild the TV60-packed word (the on-disk form) from the decoded fields."""
    word = (
        (_bcd(tc.frame) & 0x3F)
        | int(tc.dropFrame) << 6
        | int(tc.colorFrame) << 7
        | (_bcd(tc.seconds) & 0x7F) << 8
        | int(tc.fieldPhase) << 15
        | (_bcd(tc.minutes) & 0x7F) << 16
        | int(tc.bgf0) << 23
        | (_bcd(tc.hours) & 0x3F) << 24
        | int(tc.bgf1) << 30
        | int(tc.bgf2) << 31
    )
    return {"time_and_flags": word, "user_data": int(tc.userData)}


def _channel(ch: Any) -> dict[str, Any]:
    return {
        "name": ch.name,
        "type": None,
        "p_linear": bool(ch.pLinear),
        "x_sampling": int(ch.xSampling),
        "y_sampling": int(ch.ySampling),
    }


def _convert(name: str, value: Any) -> tuple[str, Any]:
    """Map one binding value to ``(exr_type_name, canonical_value)``."""
    if isinstance(value, bool):
        raise TypeError(f"attribute {name!r}: unexpected bool from binding")
    if isinstance(value, int):
        return "int", value
    if isinstance(value, float):
        return "float", value
    if isinstance(value, str):
        return "string", value
    if isinstance(value, Fraction):
        return "rational", [value.numerator, value.denominator]
    if isinstance(value, np.ndarray):
        type_name = _VEC_TYPES.get((value.dtype, value.shape))
        if type_name is None:
            raise TypeError(f"attribute {name!r}: unexpected array {value.dtype} {value.shape}")
        if type_name == "double":
            return type_name, float(value[0])
        return type_name, value.tolist()
    if isinstance(value, tuple):
        if len(value) == 2 and all(isinstance(v, np.ndarray) for v in value):
            lo, hi = value
            kind = "box2i" if lo.dtype == np.int32 else "box2f"
            return kind, {"min": lo.tolist(), "max": hi.tolist()}
        if len(value) == 8 and all(isinstance(v, float) for v in value):
            v = [float(x) for x in value]
            return "chromaticities", {
                "red": v[0:2],
                "green": v[2:4],
                "blue": v[4:6],
                "white": v[6:8],
            }
        raise TypeError(f"attribute {name!r}: unexpected tuple {value!r}")
    if isinstance(value, list):
        if value and all(isinstance(v, OpenEXR.Channel) for v in value):
            return "chlist", [_channel(c) for c in value]
        if value and all(isinstance(v, str) for v in value):
            return "stringvector", list(value)
        if value and all(isinstance(v, float) for v in value):
            return "floatvector", list(value)
        if not value:
            return ("chlist" if name == "channels" else "floatvector|stringvector"), []
        raise TypeError(f"attribute {name!r}: unexpected list {value!r}")
    if isinstance(value, OpenEXR.Compression):
        short = value.name.removesuffix("_COMPRESSION")
        return "compression", _COMPRESSION_NAMES.get(short, short)
    if isinstance(value, OpenEXR.LineOrder):
        return "lineOrder", value.name
    if isinstance(value, OpenEXR.Envmap):
        return "envmap", value.name.removeprefix("ENVMAP_")
    if isinstance(value, OpenEXR.Storage):
        return "string", value.name
    if isinstance(value, OpenEXR.TileDescription):
        return "tiledesc", {
            "x_size": int(value.xSize),
            "y_size": int(value.ySize),
            "level_mode": _LEVEL_MODES[value.mode.name],
            "rounding_mode": _ROUNDING[value.roundingMode.name],
        }
    if isinstance(value, OpenEXR.TimeCode):
        return "timecode", _timecode(value)
    if isinstance(value, OpenEXR.KeyCode):
        return "keycode", {
            "film_mfc_code": int(value.filmMfcCode),
            "film_type": int(value.filmType),
            "prefix": int(value.prefix),
            "count": int(value.count),
            "perf_offset": int(value.perfOffset),
            "perfs_per_frame": int(value.perfsPerFrame),
            "perfs_per_count": int(value.perfsPerCount),
        }
    if isinstance(value, OpenEXR.PreviewImage):
        h, w = value.pixels.shape[:2]
        return "preview", {"width": int(w), "height": int(h)}
    if isinstance(value, OpenEXR.Bytes):
        return "bytes", {"type": "bytes", "type_hint": value.type_hint, "base64": _b64(value.data)}
    if isinstance(value, OpenEXR.OpaqueAttribute):
        return value.typeName, {"type": value.typeName, "base64": _b64(value.data)}
    if isinstance(value, OpenEXR.IDManifest):
        return "idmanifest", None
    raise TypeError(f"attribute {name!r}: unsupported binding type {type(value).__name__}")


def _part_reference(header: dict[str, Any], raw: dict[str, tuple[str, bytes]] | None) -> dict:
    out: dict[str, dict[str, Any]] = {}
    for name, value in header.items():
        type_name, canon = _convert(name, value)
        entry: dict[str, Any] = {"type": type_name, "value": canon}
        if raw is not None:
            raw_type = raw.get(name, (None, b""))[0]
            if raw_type is None:
                # Not in the file: the binding invented it (``type``, or an
                # Imf::Header default for a required attribute Core dropped).
                entry["synthesized"] = True
            elif canon == [] and raw_type != type_name:
                entry["type"] = raw_type  # empty list: the binding type is ambiguous
            elif name == "type" and raw_type == "string" and isinstance(value, OpenEXR.Storage):
                raw_value = raw[name][1].decode("utf-8", "surrogateescape")
                if raw_value != canon:
                    entry["binding_value"] = canon
                    entry["value"] = raw_value
        out[name] = entry
    return out


def reference_parts(path: str | Path, *, with_channel_types: bool = False) -> list[dict]:
    """Per part ``{attr_name: {"type", "value"}}`` as OpenEXR sees the header.

    Raises whatever OpenEXR raises (ZeroDivisionError for den=0 rationals,
    UnicodeDecodeError, RuntimeError for deepImageState, ...). With
    ``with_channel_types`` the chlist ``type`` fields are filled from a full read
    when that read keeps every part.
    """
    f = OpenEXR.File(str(path), header_only=True)
    headers = [p.header for p in f.parts]
    raw = _raw_headers(path)
    if raw is not None and len(raw) != len(headers):
        raw = None
    parts = [_part_reference(h, raw[i] if raw else None) for i, h in enumerate(headers)]
    if with_channel_types:
        types = reference_channel_types(path)
        if types is not None:
            for part, mapping in zip(parts, types, strict=True):
                for entry in part.values():
                    if entry["type"] == "chlist":
                        for ch in entry["value"]:
                            ch["type"] = mapping.get(ch["name"])
    return parts


def _sample_count(header: dict[str, Any]) -> int:
    try:
        lo, hi = header["dataWindow"]
        w, h = int(hi[0]) - int(lo[0]) + 1, int(hi[1]) - int(lo[1]) + 1
        return max(w, 0) * max(h, 0) * max(len(header.get("channels", [])), 1)
    except (KeyError, TypeError, ValueError, IndexError):
        return 0


def reference_channel_types(path: str | Path) -> list[dict[str, str]] | None:
    """Per part ``{channel: "HALF"|"FLOAT"|"UINT"}`` from a full pixel read.

    Pixel types are invisible header-only, so this decodes pixels. Full reads
    drop parts whose pixels fail to decode (part indices shift), so None is
    returned unless every part survived; a failing full read also gives None.
    The header-only open may raise like :func:`reference_parts`.
    """
    headers = [p.header for p in OpenEXR.File(str(path), header_only=True).parts]
    expected = len(headers)
    if sum(_sample_count(h) for h in headers) > _MAX_FULL_READ_SAMPLES:
        return None  # fuzzed windows would make the binding allocate GiBs
    try:
        # separate_channels=True: otherwise R/G/B(/A) are merged into "RGB(A)".
        f = OpenEXR.File(str(path), separate_channels=True)
    except Exception:  # noqa: BLE001 - any pixel-read failure just means "unknown"
        return None
    if len(f.parts) != expected:
        return None
    out: list[dict[str, str]] = []
    for part in f.parts:
        mapping: dict[str, str] = {}
        for name, ch in part.channels.items():
            try:
                mapping[name] = _PIXEL_TYPES[ch.type().name]
            except Exception:  # noqa: BLE001 - fall back to the array dtype
                mapping[name] = _DTYPE_PIXEL[np.asarray(ch.pixels).dtype]
        out.append(mapping)
    return out


# --------------------------------------------------------------------------- comparison
def _as_number(x: Any, other: Any) -> Any:
    """numpy scalars to Python; "NaN"/"Infinity" strings to float when facing a float."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, str) and isinstance(other, float) and x.strip().lower() in _FLOAT_SPELLINGS:
        return float(x.strip().lower().replace("infinity", "inf"))
    return x


def _equal(a: Any, b: Any) -> bool:
    """Structural equality; floats exact, NaN equal to NaN, list == tuple."""
    a, b = _as_number(a, b), _as_number(b, a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _rational_equal(ours: Any, ref: Any) -> bool:
    try:
        (on, od), (rn, rd) = ours, ref
    except (TypeError, ValueError):
        return False
    if od == 0 or rd == 0:
        return [on, od] == [rn, rd]
    return Fraction(int(on), int(od)) == Fraction(int(rn), int(rd))


def _chlist_diffs(name: str, ours: Any, ref: list[dict]) -> list[str]:
    if not isinstance(ours, (list, tuple)):
        return [f"{name}: chlist value is {type(ours).__name__}, not a list"]
    diffs = []
    if [c.get("name") for c in ours] != [c["name"] for c in ref]:
        diffs.append(f"{name}: channel names ours={[c.get('name') for c in ours]} ref={[c['name'] for c in ref]}")
        return diffs
    for o, r in zip(ours, ref, strict=True):
        for key, rv in r.items():
            if key == "type" and rv is None:
                continue
            if not _equal(o.get(key), rv):
                diffs.append(f"{name}[{r['name']}].{key}: ours={o.get(key)!r} ref={rv!r}")
    return diffs


def compare_part(ours_attributes: list[dict], ref: dict, *, allow_duplicates: bool = False) -> list[str]:
    """Human-readable differences between our attributes and the reference part.

    Empty list means parity. Rules: same attribute names (a binding-synthesized
    ``type`` may be missing from ours), same type names, values equal with exact
    float comparison (NaN == NaN), rationals compared as fractions, chlist pixel
    types skipped where the reference has None, idmanifest values skipped.
    Duplicate names in ours are reported unless ``allow_duplicates`` (then the
    last occurrence is compared).
    """
    diffs: list[str] = []
    ours: dict[str, dict] = {}
    for attr in ours_attributes:
        name = attr.get("name")
        if name in ours and not allow_duplicates:
            diffs.append(f"{name}: duplicate attribute in ours")
        ours[name] = attr

    for name in sorted(set(ours) - set(ref), key=str):
        diffs.append(f"{name}: only in ours (type {ours[name].get('type')!r})")
    for name in sorted(set(ref) - set(ours)):
        if not ref[name].get("synthesized"):
            diffs.append(f"{name}: missing from ours (ref type {ref[name]['type']!r})")

    for name in sorted(set(ours) & set(ref), key=str):
        o, r = ours[name], ref[name]
        if o.get("type") not in r["type"].split("|"):
            diffs.append(f"{name}: type ours={o.get('type')!r} ref={r['type']!r}")
            continue
        rtype, ov, rv = o["type"], o.get("value"), r["value"]
        if rtype == "idmanifest":
            continue
        if rtype == "rational":
            ok = _rational_equal(ov, rv)
        elif rtype == "chlist":
            diffs.extend(_chlist_diffs(name, ov, rv))
            continue
        else:
            ok = _equal(ov, rv)
        if not ok:
            diffs.append(f"{name}: value ours={ov!r} ref={rv!r}")
    return diffs
