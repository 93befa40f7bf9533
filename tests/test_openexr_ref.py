"""Self-tests of the OpenEXR reference converter (tests/openexr_ref.py).

The parity tests trust ``reference_parts`` as ground truth, so it is checked
here against the raw header bytes decoded with ``struct`` (independently of both
the converter and the package), and ``compare_part`` against crafted inputs.
"""

from __future__ import annotations

import base64
import copy
import math
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from conftest import corpus_root, edge_rows, valid_rows
from openexr_ref import compare_part, reference_channel_types, reference_parts

CORPUS = corpus_root()
if CORPUS is None:
    pytest.skip("EXR corpus not available", allow_module_level=True)

ALL_TYPES = "synthetic/all_attr_types.exr"
SAMPLE = "openexr/website/downloads/sample.exr"
MULTIPART = "synthetic/multipart_scanline_tiled.exr"
RIPMAP = "synthetic/tiled_ripmap.exr"
ID_MANIFEST = "openexr/src/wrappers/python/tests/manifest_id.exr"
DEEP = "openexr/src/test/bin/test_images/11.deep.exr"


def corpus(rel: str) -> Path:
    assert CORPUS is not None
    return CORPUS / rel


# --------------------------------------------------------------------------- raw decoding
def raw_headers(path: Path) -> list[list[tuple[str, str, bytes]]]:
    """Every part's attributes as (name, type, value bytes), in file order."""
    data = path.read_bytes()
    assert struct.unpack_from("<i", data)[0] == 20000630
    multipart = struct.unpack_from("<I", data, 4)[0] & 0x1000
    pos, parts = 8, []
    while True:
        attrs = []
        while data[pos]:
            name_end = data.index(b"\0", pos)
            type_end = data.index(b"\0", name_end + 1)
            size = struct.unpack_from("<i", data, type_end + 1)[0]
            start = type_end + 5
            attrs.append(
                (
                    data[pos:name_end].decode(),
                    data[name_end + 1 : type_end].decode(),
                    data[start : start + size],
                )
            )
            pos = start + size
        pos += 1
        parts.append(attrs)
        if not multipart or data[pos] == 0:
            return parts


FIXED = {
    "int": "<i", "float": "<f", "double": "<d",
    "v2i": "<2i", "v2f": "<2f", "v2d": "<2d", "v3i": "<3i", "v3f": "<3f", "v3d": "<3d",
    "box2i": "<4i", "box2f": "<4f", "m33f": "<9f", "m33d": "<9d", "m44f": "<16f", "m44d": "<16d",
    "chromaticities": "<8f", "keycode": "<7i", "timecode": "<2I", "rational": "<iI",
    "compression": "<B", "lineOrder": "<B", "envmap": "<B",
}  # fmt: skip
ENUMS = {
    "compression": ["NONE", "RLE", "ZIPS", "ZIP", "PIZ", "PXR24", "B44", "B44A", "DWAA", "DWAB",
                    "HTJ2K256", "HTJ2K32", "LJ2K", "ZSTD"],
    "lineOrder": ["INCREASING_Y", "DECREASING_Y", "RANDOM_Y"],
    "envmap": ["LATLONG", "CUBE"],
}  # fmt: skip
PIXEL = ["UINT", "HALF", "FLOAT"]


def flatten(value: Any) -> list:
    """Canonical value -> flat list in on-disk field order (dicts keep key order)."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in flatten(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in flatten(v)]
    return [value]


def decode_raw(type_name: str, raw: bytes) -> Any:
    """The canonical value straight from the bytes, for the types with a fixed shape."""
    if type_name in ENUMS:
        return ENUMS[type_name][raw[0]]
    if type_name == "string":
        return raw.decode()
    if type_name == "floatvector":
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if type_name == "stringvector":
        out, pos = [], 0
        while pos < len(raw):
            (n,) = struct.unpack_from("<i", raw, pos)
            out.append(raw[pos + 4 : pos + 4 + n].decode())
            pos += 4 + n
        return out
    if type_name == "chlist":
        out, pos = [], 0
        while raw[pos]:
            end = raw.index(b"\0", pos)
            ptype, plinear, xs, ys = struct.unpack_from("<iB3xii", raw, end + 1)
            out.append(
                {
                    "name": raw[pos:end].decode(),
                    "type": PIXEL[ptype],
                    "p_linear": bool(plinear),
                    "x_sampling": xs,
                    "y_sampling": ys,
                }
            )
            pos = end + 1 + 16
        return out
    if type_name == "tiledesc":
        x, y, mode = struct.unpack("<IIB", raw)
        return {
            "x_size": x,
            "y_size": y,
            "level_mode": ["ONE_LEVEL", "MIPMAP", "RIPMAP"][mode & 0xF],
            "rounding_mode": ["DOWN", "UP"][mode >> 4],
        }
    if type_name == "preview":
        w, h = struct.unpack_from("<II", raw)
        return {"width": w, "height": h}
    if type_name == "bytes":
        (hint_len,) = struct.unpack_from("<I", raw)
        return {
            "type": "bytes",
            "type_hint": raw[4 : 4 + hint_len].decode(),
            "base64": base64.b64encode(raw[4 + hint_len :]).decode(),
        }
    return None


def assert_matches_raw(path: Path) -> int:
    """Check every converted attribute of every part against the raw bytes."""
    ref = reference_parts(path)
    raw = raw_headers(path)
    assert len(ref) == len(raw)
    checked = 0
    for ref_part, raw_part in zip(ref, raw, strict=True):
        real = {n for n, e in ref_part.items() if not e.get("synthesized")}
        assert real == {name for name, _, _ in raw_part}
        for name, type_name, blob in raw_part:
            entry = ref_part[name]
            assert entry["type"] == type_name, name
            value = entry["value"]
            if type_name in FIXED and type_name not in ENUMS:
                got = flatten(value)
                want = list(struct.unpack(FIXED[type_name], blob))
                if type_name == "rational":
                    assert Fraction(*got) == Fraction(*want), name
                else:
                    assert got == want, name
                    assert all(type(g) is type(w) for g, w in zip(got, want, strict=True)), name
            elif type_name == "chlist":
                raw_channels = decode_raw(type_name, blob)
                for ch in raw_channels:
                    ch["type"] = None
                assert value == raw_channels, name
            elif type_name == "idmanifest":
                assert value is None
            elif (decoded := decode_raw(type_name, blob)) is not None:
                assert value == decoded, name
            else:  # opaque / custom type: raw bytes verbatim
                assert value == {"type": type_name, "base64": base64.b64encode(blob).decode()}
            checked += 1
    return checked


# --------------------------------------------------------------------------- converter
def test_all_attr_types_produces_every_type() -> None:
    (part,) = reference_parts(corpus(ALL_TYPES))
    types = {e["type"] for e in part.values()}
    expected = {
        "box2f", "box2i", "bytes", "chlist", "chromaticities", "compression", "double",
        "envmap", "float", "floatvector", "int", "keycode", "lineOrder", "m33d", "m33f",
        "m44d", "m44f", "myCustomType", "preview", "rational", "string", "stringvector",
        "timecode", "v2d", "v2f", "v2i", "v3d", "v3f", "v3i",
    }  # fmt: skip
    assert expected <= types, expected - types


@pytest.mark.parametrize("rel", [ALL_TYPES, SAMPLE, MULTIPART, RIPMAP, ID_MANIFEST])
def test_reference_matches_raw_bytes(rel: str) -> None:
    assert assert_matches_raw(corpus(rel)) >= 8


def test_all_attr_types_concrete_values() -> None:
    (part,) = reference_parts(corpus(ALL_TYPES))
    assert part["a_int"] == {"type": "int", "value": 7}
    assert part["a_float"] == {"type": "float", "value": 1.5}
    assert part["a_double"] == {"type": "double", "value": 2.25}
    assert part["a_v2i"]["value"] == [1, 2]
    assert part["a_v3d"] == {"type": "v3d", "value": [1.0, 2.0, 3.0]}
    assert part["a_m33f"]["value"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert part["dataWindow"] == {"type": "box2i", "value": {"min": [0, 0], "max": [47, 31]}}
    assert part["a_box2f"] == {"type": "box2f", "value": {"min": [0.0, 0.0], "max": [3.0, 3.0]}}
    assert part["a_rational"] == {"type": "rational", "value": [24000, 1001]}
    assert part["a_stringvector"]["value"] == ["a", "bb", ""]
    assert part["a_floatvector"]["value"] == [1.0, 2.0, 3.5]
    assert part["compression"]["value"] == "ZIP"
    assert part["lineOrder"]["value"] == "INCREASING_Y"
    assert part["envmap"]["value"] == "LATLONG"
    assert part["preview"]["value"] == {"width": 6, "height": 4}
    # 01:02:03:04 in TV60 BCD packing, as stored on disk.
    assert part["timeCode"]["value"] == {"time_and_flags": 0x01020304, "user_data": 0}
    assert part["keyCode"]["value"] == {
        "film_mfc_code": 1, "film_type": 2, "prefix": 3, "count": 4,
        "perf_offset": 5, "perfs_per_frame": 6, "perfs_per_count": 20,
    }  # fmt: skip
    assert part["a_bytes"]["value"]["type_hint"] == "application/x-test"
    assert part["a_opaque"]["type"] == "myCustomType"
    # float32 values widened exactly, not rounded to the decimal that was written.
    f32 = [struct.unpack("<f", struct.pack("<f", v))[0] for v in (0.64, 0.33)]
    assert part["chromaticities"]["value"]["red"] == f32
    assert part["type"] == {"type": "string", "value": "scanlineimage"}
    assert [c["name"] for c in part["channels"]["value"]] == ["B", "G", "R"]


def test_tiledesc_and_display_window() -> None:
    (part,) = reference_parts(corpus(RIPMAP))
    assert part["tiles"] == {
        "type": "tiledesc",
        "value": {"x_size": 8, "y_size": 8, "level_mode": "RIPMAP", "rounding_mode": "DOWN"},
    }
    assert part["displayWindow"]["value"] == {"min": [0, 0], "max": [23, 11]}


def test_binding_invented_type_is_marked() -> None:
    (part,) = reference_parts(corpus(SAMPLE))  # the file has no `type` attribute
    assert part["type"]["synthesized"] is True
    (part,) = reference_parts(corpus("synthetic/edge/type_bogus.exr"))
    assert part["type"]["value"] == "weirdimage"
    assert part["type"]["binding_value"] == "scanlineimage"
    assert "synthesized" not in part["type"]


def test_empty_floatvector_type_from_raw() -> None:
    (part,) = reference_parts(corpus("synthetic/edge/floatvector_empty.exr"))
    assert part["fv"] == {"type": "floatvector", "value": []}


def test_idmanifest_marked() -> None:
    (part,) = reference_parts(corpus(ID_MANIFEST))
    assert part["idManifest"] == {"type": "idmanifest", "value": None}


def test_unreduced_rational_is_normalised_by_binding() -> None:
    (part,) = reference_parts(corpus("synthetic/edge/rational_unreduced.exr"))
    (rational,) = [e for e in part.values() if e["type"] == "rational"]
    assert rational["value"] == [24, 1]


@pytest.mark.parametrize(
    ("rel", "exc"),
    [
        ("synthetic/edge/rational_den0.exr", ZeroDivisionError),
        ("synthetic/edge/string_bad_utf8.exr", UnicodeDecodeError),
        ("synthetic/edge/deepImageState.exr", RuntimeError),
        (DEEP, RuntimeError),
    ],
)
def test_binding_failures_propagate(rel: str, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        reference_parts(corpus(rel))


def test_channel_types_full_read() -> None:
    assert reference_channel_types(corpus(MULTIPART)) == [
        {"B": "HALF", "G": "HALF", "R": "HALF"},
        {"Z": "FLOAT", "id": "UINT"},
    ]
    assert reference_channel_types(corpus(SAMPLE)) == [{"G": "HALF", "Z": "FLOAT"}]
    parts = reference_parts(corpus(ID_MANIFEST), with_channel_types=True)
    types = {c["name"]: c["type"] for c in parts[0]["channels"]["value"]}
    assert types == {"A": "HALF", "B": "HALF", "G": "HALF", "R": "HALF", "id": "UINT"}


def test_channel_types_none_when_parts_dropped() -> None:
    path = corpus("openexr/src/wrappers/python/tests/unfinished_multipart.exr")
    assert len(reference_parts(path)) == 4
    assert reference_channel_types(path) is None


@pytest.mark.parametrize("row", valid_rows(), ids=lambda r: r["path"])
def test_valid_corpus_converts(row: dict) -> None:
    """Every valid file converts (deep files hit the binding's deepImageState gap)."""
    path = corpus(row["path"])
    try:
        parts = reference_parts(path)
    except RuntimeError as exc:
        assert "deepImageState" in str(exc)
        return
    for part in parts:
        assert {"channels", "compression", "dataWindow", "displayWindow"} <= part.keys()
        for entry in part.values():
            assert entry["type"] and "|" not in entry["type"]
    if "Damaged" not in row["path"]:
        assert_matches_raw(path)


@pytest.mark.parametrize("row", edge_rows(), ids=lambda r: r["path"])
def test_edge_corpus_converts_or_raises(row: dict) -> None:
    try:
        parts = reference_parts(corpus(row["path"]))
    except (RuntimeError, ZeroDivisionError, UnicodeDecodeError):
        return
    assert parts and all(isinstance(p, dict) for p in parts)


# --------------------------------------------------------------------------- compare_part
def as_ours(ref_part: dict) -> list[dict]:
    """What a perfect parser would emit for this reference part."""
    return [
        {"name": n, "type": e["type"], "value": copy.deepcopy(e["value"])}
        for n, e in ref_part.items()
        if not e.get("synthesized")
    ]


def find(attrs: list[dict], name: str) -> dict:
    return next(a for a in attrs if a["name"] == name)


def test_compare_perfect_parity() -> None:
    for rel in (ALL_TYPES, MULTIPART, RIPMAP, SAMPLE, ID_MANIFEST):
        for ref in reference_parts(corpus(rel)):
            assert compare_part(as_ours(ref), ref) == []


def test_compare_reports_differences() -> None:
    (ref,) = reference_parts(corpus(ALL_TYPES))
    ours = as_ours(ref)
    find(ours, "a_float")["value"] = 1.5000001
    find(ours, "a_v2f")["type"] = "v2d"
    find(ours, "a_m44f")["value"][3][3] = 2.0
    ours = [a for a in ours if a["name"] != "a_string"]
    ours.append({"name": "extra", "type": "int", "value": 1})
    ours.append(dict(find(ours, "a_int")))
    diffs = compare_part(ours, ref)
    joined = "\n".join(diffs)
    for needle in ("a_float: value", "a_v2f: type", "a_m44f: value", "a_string: missing",
                   "extra: only in ours", "a_int: duplicate"):  # fmt: skip
        assert needle in joined, joined
    assert len(diffs) == 6
    assert not any("duplicate" in d for d in compare_part(ours, ref, allow_duplicates=True))


def test_compare_rules() -> None:
    (ref,) = reference_parts(corpus(ALL_TYPES))
    ours = as_ours(ref)
    # Rationals compare as fractions: the raw 48000/2002 equals the binding's 24000/1001.
    find(ours, "a_rational")["value"] = [48000, 2002]
    # Tuples are fine where lists are expected; the synthesized rule does not apply.
    find(ours, "a_v3i")["value"] = (1, 2, 3)
    # Pixel types are ignored where the reference has None...
    for ch in find(ours, "channels")["value"]:
        ch["type"] = "HALF"
    # ...and idmanifest values are never compared.
    assert compare_part(ours, ref) == []

    find(ours, "a_rational")["value"] = [24001, 1001]
    assert any("a_rational" in d for d in compare_part(ours, ref))

    typed = reference_parts(corpus(ALL_TYPES), with_channel_types=True)[0]
    find(ours, "a_rational")["value"] = [24000, 1001]
    find(ours, "channels")["value"][0]["type"] = "FLOAT"
    assert compare_part(ours, typed) == ["channels[B].type: ours='FLOAT' ref='HALF'"]


def test_compare_nan_and_synthesized_type() -> None:
    (ref,) = reference_parts(corpus(SAMPLE))
    ref = copy.deepcopy(ref)
    ref["pixelAspectRatio"]["value"] = math.nan
    ours = as_ours(ref)
    assert "type" not in {a["name"] for a in ours}  # binding-invented: optional
    assert compare_part(ours, ref) == []
    find(ours, "pixelAspectRatio")["value"] = "NaN"  # JSON-style spelling
    assert compare_part(ours, ref) == []
    find(ours, "pixelAspectRatio")["value"] = 1.0
    assert compare_part(ours, ref) == ["pixelAspectRatio: value ours=1.0 ref=nan"]
