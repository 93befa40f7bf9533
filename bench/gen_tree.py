#!/usr/bin/env python3
"""Generate a realistic VFX render tree of small EXR files (demo + benchmarks).

Real render farms produce many image sequences that share a handful of
"templates" (renderer, AOV layout, compression, tiling, multipart/stereo,
studio metadata) and differ per frame only in a few attributes (dataWindow
drift, capDate, timeCode, camera matrices, render stats). The crawler's cost is
dominated by headers, so the files keep realistic headers but tiny pixel data.

Layout: ``<show>/<seq>/<shot>/render/<layer>/v<NNN>/<layer>_v<NNN>.<frame>.exr``
plus ``manifest.tsv`` (relpath, template_id, show, layer, frame, damaged).

Deterministic: the same arguments give byte-identical files, whatever ``--jobs``.

    python bench/gen_tree.py OUT_DIR --files 2000 [--templates 40] [--seed 0]
        [--damaged M] [--width 16 --height 16] [--jobs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import multiprocessing
import os
import random
import struct
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR

__all__ = ["Template", "generate", "main", "make_templates", "render_file"]

MANIFEST_NAME = "manifest.tsv"
MANIFEST_COLUMNS = ("relpath", "template_id", "show", "layer", "frame", "damaged")
DAMAGE_KINDS = ("truncated_header", "bad_magic", "zero_length", "garbage")
_MAGIC = b"\x76\x2f\x31\x01"

# --------------------------------------------------------------------------- vocabulary
SHOWS = ["nightfall", "paper_moon", "ironwood", "bluefin", "kestrel", "tidewater", "saltmarsh", "orbit9"]
RESOLUTIONS = [(1920, 1080), (2048, 858), (2048, 1152), (3840, 2160), (4096, 2160), (1998, 1080), (2880, 1620)]
FPS = [Fraction(24), Fraction(24000, 1001), Fraction(25), Fraction(30000, 1001), Fraction(48)]
RENDERERS = [
    # (software, host app, attribute prefix)
    ("Arnold 7.2.4.1", "Maya 2024.2", "arnold"),
    ("Arnold 7.3.1.0", "Houdini 20.0.653", "arnold"),
    ("RenderMan 26.1", "Katana 6.5v2", "prman"),
    ("RenderMan 25.2", "Maya 2023.3", "prman"),
    ("Karma XPU 20.0.653", "Houdini 20.0.653", "karma"),
    ("Karma CPU 20.5.332", "Houdini 20.5.332", "karma"),
    ("V-Ray 6.1", "Maya 2024.2", "vray"),
    ("Redshift 3.5.19", "Houdini 19.5.640", "redshift"),
]
LAYERS = [
    "beauty", "hero_char", "fg_chars", "bg_env", "crowd", "fx_smoke", "fx_sparks", "volumes",
    "matte", "shadow_catcher", "holdout", "lgt_key", "lgt_rim", "env_probe",
]  # fmt: skip
ARTISTS = ["jdoe", "mchen", "aokafor", "lpetrov", "srao", "kwalsh", "tnguyen", "bmartin"]
# Weighted toward what studios really write: lossless ZIP/PIZ and lossy DWA dominate.
COMPRESSIONS = ["ZIP"] * 5 + ["PIZ"] * 4 + ["DWAA"] * 4 + ["DWAB"] * 3 + ["ZIPS"] * 3 + [
    "PXR24", "PXR24", "RLE", "B44", "B44A", "NONE", "ZSTD",
]  # fmt: skip
LOSSLESS_DATA = ["ZIP", "ZIPS", "PIZ"]  # data AOVs (Z, N, P, ids) are never stored lossy
CHROMATICITIES = {
    "rec709": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    "aces_ap0": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767),
    "aces_ap1": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
}

# AOV name -> (name aliases, component sets, pixel type: "COLOR" follows the template)
AOVS: dict[str, tuple[list[str], list[str], str]] = {
    "diffuse": (["diffuse", "diff", "diffuse_direct"], ["RGB", "rgb"], "COLOR"),
    "specular": (["specular", "spec", "specular_direct"], ["RGB", "rgb"], "COLOR"),
    "emission": (["emission", "emit"], ["RGB"], "COLOR"),
    "sss": (["sss", "subsurface"], ["RGB"], "COLOR"),
    "transmission": (["transmission", "trans"], ["RGB"], "COLOR"),
    "albedo": (["albedo", "diffuse_albedo"], ["RGB"], "HALF"),
    "normal": (["N", "normal", "Nworld"], ["XYZ", "xyz"], "FLOAT"),
    "position": (["P", "position", "Pworld"], ["XYZ"], "FLOAT"),
    "depth": (["Z", "depth"], ["Z"], "FLOAT"),
    "motion": (["motionvector", "motion", "mv"], ["XY", "RG"], "HALF"),
    "object_id": (["id", "objectId", "object_id"], [""], "UINT"),
}
CRYPTO_TYPES = ["CryptoObject", "CryptoMaterial", "CryptoAsset"]


# --------------------------------------------------------------------------- templates
@dataclasses.dataclass(frozen=True)
class PartSpec:
    """One EXR part: channels as (name, pixel type) and per-part storage."""

    name: str | None
    view: str | None
    channels: tuple[tuple[str, str], ...]
    compression: str
    tiles: tuple[int, int, str, str] | None  # x size, y size, ONE_LEVEL|MIPMAP, DOWN|UP
    line_order: str
    attrs: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Template:
    """A render setup shared by every frame of one image sequence."""

    template_id: int
    show: str
    seq: str
    shot: str
    layer: str
    version: int
    first_frame: int
    display: tuple[int, int]
    data_origin: tuple[int, int]
    fps: Fraction
    parts: tuple[PartSpec, ...]
    attrs: tuple[tuple[str, Any], ...]
    renderer_prefix: str
    camera: bool
    base_time: int  # seconds since the epoch of frame first_frame's capDate

    def relpath(self, frame: int) -> str:
        """Where one frame of this sequence lives in the tree."""
        v = f"v{self.version:03d}"
        return f"{self.show}/{self.seq}/{self.shot}/render/{self.layer}/{v}/{self.layer}_{v}.{frame:04d}.exr"


def _aov_channels(rng: random.Random, aov: str, color_type: str) -> list[tuple[str, str]]:
    aliases, comp_sets, ptype = AOVS[aov]
    prefix = rng.choice(aliases)
    comps = rng.choice(comp_sets)
    ptype = color_type if ptype == "COLOR" else ptype
    if not comps:
        return [(prefix, ptype)]
    if comps == "Z":
        return [("Z", ptype)] if prefix == "Z" else [(f"{prefix}.Z", ptype)]
    return [(f"{prefix}.{c}", ptype) for c in comps]


def _crypto(rng: random.Random, kind: str, prefix: str) -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
    """Cryptomatte-style ranked id/coverage layers plus their metadata strings."""
    ranks = rng.choice([2, 3])
    channels = [(f"{kind}{i:02d}.{c}", "FLOAT") for i in range(ranks) for c in "RGBA"]
    key = f"{rng.getrandbits(28):07x}"
    names = [f"/root/{prefix}/geo_{i:03d}" for i in range(rng.randint(3, 9))]
    manifest = "{" + ",".join(f'"{n}":"{rng.getrandbits(32):08x}"' for n in names) + "}"
    attrs = [
        (f"cryptomatte/{key}/name", kind),
        (f"cryptomatte/{key}/hash", "MurmurHash3_32"),
        (f"cryptomatte/{key}/conversion", "uint32_to_float32"),
        (f"cryptomatte/{key}/manifest", manifest),
    ]
    return channels, attrs


def _in_view(channel: str, view: str) -> str:
    layer, _, comp = channel.rpartition(".")
    return f"{layer}.{view}.{comp}" if layer else f"{view}.{comp}"


def _make_template(tid: int, seed: int, shows: list[str]) -> Template:
    rng = random.Random(f"gen_tree:{seed}:template:{tid}")
    show = rng.choice(shows)
    show_rng = random.Random(f"gen_tree:{seed}:show:{show}")  # per-show pipeline settings
    display = show_rng.choice(RESOLUTIONS)
    fps = show_rng.choice(FPS)
    renderer = RENDERERS[show_rng.randrange(len(RENDERERS))]
    if rng.random() < 0.2:
        renderer = rng.choice(RENDERERS)
    software, host, prefix = renderer
    chroma = show_rng.choice([None, "rec709", "aces_ap0", "aces_ap1"])
    abbrev = show.replace("_", "")[:3].upper()
    seq = f"{abbrev}_{rng.randint(1, 3) * 10:03d}"
    shot = f"{seq}_{rng.randint(1, 4) * 10:04d}"
    layer = rng.choice(LAYERS)
    if layer == "env_probe":
        display = (4096, 2048)

    color_type = rng.choice(["HALF", "HALF", "HALF", "FLOAT"])
    aov_pool = [a for a in AOVS if a != "object_id"]
    aovs = rng.sample(aov_pool, rng.randint(0, 6))
    if rng.random() < 0.3:
        aovs.append("object_id")
    crypto = [k for k in CRYPTO_TYPES if rng.random() < 0.25]
    compression = rng.choice(COMPRESSIONS)
    multipart = rng.random() < 0.35
    stereo = rng.random() < 0.2
    views = ["left", "right"] if stereo else [None]
    tiled = rng.random() < 0.2
    tiles: tuple[int, int, str, str] | None = None
    if tiled:
        size = rng.choice([16, 32, 64])
        mode = "MIPMAP" if (not multipart and rng.random() < 0.4) else "ONE_LEVEL"
        tiles = (size, size, mode, rng.choice(["DOWN", "DOWN", "UP"]) if mode == "MIPMAP" else "DOWN")
    line_order = "INCREASING_Y" if tiled or rng.random() < 0.85 else "DECREASING_Y"

    beauty = [(c, "HALF") for c in "RGBA"]
    # (part name, channels, part attributes, may use a lossy codec)
    groups: list[tuple[str, list[tuple[str, str]], list[tuple[str, Any]], bool]] = [("rgba", beauty, [], True)]
    for aov in aovs:
        lossy_ok = AOVS[aov][2] in ("COLOR", "HALF") and aov != "motion"
        groups.append((aov, _aov_channels(rng, aov, color_type), [], lossy_ok))
    for kind in crypto:
        chans, attrs = _crypto(rng, kind, layer)
        groups.append((kind.lower(), chans, attrs, False))

    attrs: list[tuple[str, Any]] = [
        ("owner", rng.choice(ARTISTS)),
        ("software", software),
        ("hostApp", host),
        ("comments", f"{layer} pass for {shot}, take {rng.randint(1, 9)}"),
        ("framesPerSecond", fps),
        ("show", show),
        ("sequence", seq),
        ("shot", shot),
        ("renderLayer", layer),
        ("pixelAspectRatio", 2.0 if rng.random() < 0.05 else 1.0),
    ]
    if chroma:
        attrs.append(("chromaticities", CHROMATICITIES[chroma]))
    if rng.random() < 0.3:
        attrs.append(("utcOffset", float(rng.choice([-28800, -18000, 0, 3600, 19800]))))
    if layer == "env_probe":
        attrs.append(("envmap", "LATLONG"))
    if rng.random() < 0.25:  # Arnold-style stats names exceed 31 bytes -> long-names flag
        attrs.append((f"{prefix}/stats/memory/start_of_render_mb", round(rng.uniform(900, 9000), 1)))
    if rng.random() < 0.2:
        attrs.append(("nuke/node_hash", f"{rng.getrandbits(64):016x}"))

    parts: list[PartSpec] = []
    if multipart:
        for view in views:
            for gname, chans, gattrs, lossy_ok in groups:
                comp = compression if (lossy_ok or compression in LOSSLESS_DATA) else rng.choice(LOSSLESS_DATA)
                pname = gname if view is None else f"{gname}_{view}"
                parts.append(PartSpec(pname, view, tuple(chans), comp, tiles, line_order, tuple(gattrs)))
    else:
        chans = [c for _, group, _, _ in groups for c in group]
        gattrs = [a for _, _, group_attrs, _ in groups for a in group_attrs]
        if stereo:  # single-part multiview: the view is the second-to-last name component
            layers = sorted({n.rpartition(".")[0] for n, _ in chans})
            keep = {layer for layer in layers if not layer or rng.random() < 0.5}
            chans += [(_in_view(n, "right"), t) for n, t in chans if n.rpartition(".")[0] in keep]
            gattrs.append(("multiView", ("left", "right")))
        parts.append(PartSpec(None, None, tuple(chans), compression, tiles, line_order, tuple(gattrs)))

    w, h = display
    if rng.random() < 0.15:
        origin = (-rng.randint(4, 64), -rng.randint(4, 64))  # overscan
    else:
        origin = (rng.randrange(0, max(1, w - 64)), rng.randrange(0, max(1, h - 64)))
    return Template(
        template_id=tid,
        show=show,
        seq=seq,
        shot=shot,
        layer=layer,
        version=rng.randint(1, 12),
        first_frame=rng.choice([1001, 1001, 1001, 1001, 101, 1]),
        display=display,
        data_origin=origin,
        fps=fps,
        parts=tuple(parts),
        attrs=tuple(attrs),
        renderer_prefix=prefix,
        camera=prefix in ("arnold", "prman", "karma"),
        base_time=1_700_000_000 + rng.randrange(0, 30_000_000),
    )


def make_templates(count: int, seed: int = 0) -> list[Template]:
    """``count`` deterministic templates; sequences never share a directory."""
    pick = random.Random(f"gen_tree:{seed}:shows")
    shows = pick.sample(SHOWS, min(len(SHOWS), 1 + count // 6))
    templates, taken = [], set()
    for tid in range(count):
        t = _make_template(tid, seed, shows)
        version = t.version
        while (t.show, t.seq, t.shot, t.layer, version) in taken:
            version += 1
        taken.add((t.show, t.seq, t.shot, t.layer, version))
        if version != t.version:
            t = dataclasses.replace(t, version=version)
        templates.append(t)
    return templates


# --------------------------------------------------------------------------- writing
_DTYPES = {"HALF": np.float16, "FLOAT": np.float32, "UINT": np.uint32}
_ENUM = {
    "compression": lambda v: getattr(OpenEXR, "NO_COMPRESSION" if v == "NONE" else f"{v}_COMPRESSION"),
    "lineOrder": lambda v: getattr(OpenEXR, v),
    "envmap": lambda v: getattr(OpenEXR, f"ENVMAP_{v}"),
}
_LEVEL = {"ONE_LEVEL": "ONE_LEVEL", "MIPMAP": "MIPMAP_LEVELS"}


def _box(x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([x0, y0], np.int32), np.array([x1, y1], np.int32)


def _timecode_fields(frame: int, fps: Fraction) -> tuple[int, int, int, int]:
    """(hours, minutes, seconds, frame) of a frame number at ``fps``."""
    base = min(30, max(1, round(float(fps))))  # TV60 packing holds frames 0..39 only
    seconds_total, frames = divmod(frame, base)
    return (seconds_total // 3600 + 1) % 24, seconds_total // 60 % 60, seconds_total % 60, frames


def _timecode(fields: tuple[int, int, int, int]) -> Any:
    tc = OpenEXR.TimeCode()
    tc.hours, tc.minutes, tc.seconds, tc.frame = fields
    return tc


def _tv60(fields: tuple[int, int, int, int]) -> int:
    """The packed on-disk timeAndFlags word (BCD, no flags) for the fields."""
    h, m, s, f = ((v // 10) << 4 | (v % 10) for v in fields)
    return f | s << 8 | m << 16 | h << 24


def _camera(frame: int, tid: int) -> tuple[np.ndarray, np.ndarray]:
    angle = (frame * 0.01 + tid) % (2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    w2c = np.array(
        [[c, 0, -s, 0], [0, 1, 0, 0], [s, 0, c, 0], [frame * 0.05, -1.7, 12.0 + tid, 1]],
        np.float32,
    )
    proj = np.diag(np.array([1.6, 2.84, -1.0002, 0.0], np.float32))
    proj[2, 3], proj[3, 2] = -1.0, -0.2
    return w2c, (w2c @ proj).astype(np.float32)


def _pixels(ptype: str, index: int, w: int, h: int) -> np.ndarray:
    """Tiny deterministic ramp; identical for every frame so frames can be patched."""
    if ptype == "UINT":
        return (np.arange(w * h, dtype=np.uint32).reshape(h, w) + np.uint32(index)).astype(np.uint32)
    base = np.arange(w * h, dtype=np.float32).reshape(h, w) / float(w * h)
    return (base + np.float32(index * 0.1)).astype(_DTYPES[ptype])


def _to_binding(name: str, value: Any) -> Any:
    if name in _ENUM:
        return _ENUM[name](value)
    if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)  # stringvector; templates keep tuples to stay hashable
    return value


def _tile_desc(tiles: tuple[int, int, str, str]) -> Any:
    td = OpenEXR.TileDescription()
    td.xSize, td.ySize = tiles[0], tiles[1]
    td.mode = getattr(OpenEXR, _LEVEL[tiles[2]])
    td.roundingMode = OpenEXR.ROUND_UP if tiles[3] == "UP" else OpenEXR.ROUND_DOWN
    return td


def _header_end(data: bytes) -> int:
    """Offset just past the header(s): where the offset tables start."""
    multipart = struct.unpack_from("<I", data, 4)[0] & 0x1000
    pos = 8
    while True:
        while data[pos]:
            pos = data.index(b"\0", data.index(b"\0", pos) + 1) + 1
            pos += 4 + struct.unpack_from("<i", data, pos)[0]
        pos += 1
        if not multipart or data[pos] == 0:
            return pos + 1 if multipart else pos


def _level_sizes(size: int, other: int, rounding: str) -> list[int]:
    """MIPMAP level sizes along one axis (level count comes from the larger axis)."""
    biggest = max(size, other)
    if rounding == "UP":
        return [max(1, -(-size // (1 << lv))) for lv in range((biggest - 1).bit_length() + 1)]
    return [max(1, size >> lv) for lv in range(biggest.bit_length())]


def _complete_mipmap(data: bytes, part: PartSpec, w: int, h: int) -> bytes:
    """Append the mip levels the binding leaves unwritten (it writes level 0 only).

    Without this the offset table holds zeros, i.e. an incomplete file. The
    extra tiles are stored raw (packed size == unpacked size means
    "uncompressed" for every EXR codec), so no codec is needed here.
    """
    assert part.tiles is not None
    tx, ty, _, rounding = part.tiles
    widths, heights = _level_sizes(w, h, rounding), _level_sizes(h, w, rounding)
    pixel_bytes = sum(np.dtype(_DTYPES[t]).itemsize for _, t in part.channels)
    table = _header_end(data)
    out = bytearray(data)
    index = 0
    for level, (lw, lh) in enumerate(zip(widths, heights, strict=True)):
        for dy in range(math.ceil(lh / ty)):
            for dx in range(math.ceil(lw / tx)):
                if struct.unpack_from("<Q", out, table + 8 * index)[0] == 0:
                    tw, th = min(tx, lw - dx * tx), min(ty, lh - dy * ty)
                    payload = bytes(tw * th * pixel_bytes)
                    struct.pack_into("<Q", out, table + 8 * index, len(out))
                    out += struct.pack("<5i", dx, dy, level, level, len(payload)) + payload
                index += 1
    return bytes(out)


@dataclasses.dataclass(frozen=True)
class _FrameState:
    """Everything that differs between frames of one sequence (all fixed-size on disk)."""

    data_origin: tuple[int, int]
    cap_date: str
    timecode: tuple[int, int, int, int]
    render_time: float
    camera: tuple[np.ndarray, np.ndarray] | None


def _frame_state(t: Template, frame: int) -> _FrameState:
    rng = random.Random(f"frame:{t.template_id}:{frame}")
    step = frame - t.first_frame
    return _FrameState(
        data_origin=(t.data_origin[0] + (step * 7) % 23, t.data_origin[1] + (step * 3) % 11),
        cap_date=time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(t.base_time + step * 41)),
        timecode=_timecode_fields(frame, t.fps),
        render_time=round(rng.uniform(120.0, 5400.0), 2),
        camera=_camera(frame, t.template_id) if t.camera else None,
    )


def _encode_with_binding(t: Template, st: _FrameState, width: int, height: int) -> bytes:
    """One frame written by the OpenEXR binding (the reference path)."""
    ox, oy = st.data_origin
    common: dict[str, Any] = {
        "displayWindow": _box(0, 0, t.display[0] - 1, t.display[1] - 1),
        "capDate": st.cap_date,
        "timeCode": _timecode(st.timecode),
        f"{t.renderer_prefix}/stats/render_time": st.render_time,
    }
    for name, value in t.attrs:
        common[name] = _to_binding(name, value)
    if st.camera is not None:
        common["worldToCamera"], common["worldToNDC"] = st.camera

    built = []
    for part in t.parts:
        header = dict(common)
        header["dataWindow"] = _box(ox, oy, ox + width - 1, oy + height - 1)
        header["compression"] = _to_binding("compression", part.compression)
        header["lineOrder"] = _to_binding("lineOrder", part.line_order)
        header["type"] = OpenEXR.tiledimage if part.tiles else OpenEXR.scanlineimage
        if part.tiles:
            header["tiles"] = _tile_desc(part.tiles)
        if part.view:
            header["view"] = part.view
        for name, value in part.attrs:
            header[name] = _to_binding(name, value)
        channels = {name: _pixels(pt, i, width, height) for i, (name, pt) in enumerate(part.channels)}
        built.append((header, channels, part.name))

    buf = io.BytesIO()
    if len(built) == 1 and built[0][2] is None:
        OpenEXR.File(built[0][0], built[0][1], num_threads=0).write(buf)
    else:
        parts = [OpenEXR.Part(header, channels, name) for header, channels, name in built]
        OpenEXR.File(parts, num_threads=0).write(buf)
    data = buf.getvalue()
    only = t.parts[0]
    if len(t.parts) == 1 and only.tiles and only.tiles[2] == "MIPMAP":
        data = _complete_mipmap(data, only, width, height)
    return data


@dataclasses.dataclass
class _Base:
    """A binding-written first frame plus where its per-frame bytes live."""

    data: bytes
    origin_y: int
    values: list[dict[str, int]]  # per part: attribute name -> value offset
    scanline_y: list[int]  # offsets of the int32 y of every scanline chunk


def _attribute_offsets(data: bytes) -> list[dict[str, int]]:
    multipart = struct.unpack_from("<I", data, 4)[0] & 0x1000
    pos, parts = 8, []
    while True:
        attrs = {}
        while data[pos]:
            name_end = data.index(b"\0", pos)
            type_end = data.index(b"\0", name_end + 1)
            size = struct.unpack_from("<i", data, type_end + 1)[0]
            attrs[data[pos:name_end].decode()] = type_end + 5
            pos = type_end + 5 + size
        parts.append(attrs)
        pos += 1
        if not multipart or data[pos] == 0:
            return parts


def _make_base(t: Template, width: int, height: int) -> _Base:
    st = _frame_state(t, t.first_frame)
    data = _encode_with_binding(t, st, width, height)
    values = _attribute_offsets(data)
    multipart = bool(struct.unpack_from("<I", data, 4)[0] & 0x1000)
    table = _header_end(data)
    scanline_y = []
    for part, attrs in zip(t.parts, values, strict=True):
        if multipart:
            count = struct.unpack_from("<i", data, attrs["chunkCount"])[0]
        else:  # the table ends where the first chunk (in file order) starts
            count, first = 0, len(data)
            while table + 8 * count < first:
                first = min(first, struct.unpack_from("<Q", data, table + 8 * count)[0])
                count += 1
        offsets = struct.unpack_from(f"<{count}Q", data, table)
        table += 8 * count
        if part.tiles is None:  # tile coordinates are relative to the data window
            scanline_y += [o + (4 if multipart else 0) for o in offsets]  # int32 part number
    return _Base(data, st.data_origin[1], values, scanline_y)


_BASES: dict[tuple[Template, int, int], _Base] = {}


def render_file(t: Template, frame: int, width: int = 16, height: int = 16, *, fast: bool = True) -> bytes:
    """The bytes of one frame of template ``t`` (deterministic).

    The binding costs 1-3 ms per part (DWA/PIZ set-up dominates tiny images), so
    by default only each sequence's first frame goes through it; later frames
    patch that file's fixed-size per-frame values (dataWindow, capDate,
    timeCode, render time, camera matrices) and scanline chunk y coordinates
    in place. The result is byte-identical to ``fast=False`` (tested).
    """
    if not fast:
        return _encode_with_binding(t, _frame_state(t, frame), width, height)
    key = (t, width, height)
    base = _BASES.get(key)
    if base is None:
        if len(_BASES) > 4096:
            _BASES.clear()
        base = _BASES[key] = _make_base(t, width, height)
    if frame == t.first_frame:
        return base.data
    st = _frame_state(t, frame)
    out = bytearray(base.data)
    ox, oy = st.data_origin
    common = {
        "capDate": st.cap_date.encode("ascii"),
        "timeCode": struct.pack("<II", _tv60(st.timecode), 0),
        f"{t.renderer_prefix}/stats/render_time": struct.pack("<f", st.render_time),
    }
    if st.camera is not None:
        common["worldToCamera"] = st.camera[0].astype("<f4").tobytes()
        common["worldToNDC"] = st.camera[1].astype("<f4").tobytes()
    window = struct.pack("<4i", ox, oy, ox + width - 1, oy + height - 1)
    for attrs in base.values:
        for name, blob in common.items():
            out[attrs[name] : attrs[name] + len(blob)] = blob
        out[attrs["dataWindow"] : attrs["dataWindow"] + 16] = window
    dy = oy - base.origin_y
    if dy:
        for pos in base.scanline_y:
            struct.pack_into("<i", out, pos, struct.unpack_from("<i", out, pos)[0] + dy)
    return bytes(out)


def damage(good: bytes, kind: str, rng: random.Random) -> bytes:
    """Turn a good file into one whose header OpenEXR cannot read."""
    if kind == "zero_length":
        return b""
    if kind == "garbage":
        blob = bytearray(rng.randbytes(rng.randint(64, 4096)))
        if blob[:4] == _MAGIC:
            blob[0] ^= 0xFF
        return bytes(blob)
    if kind == "bad_magic":
        blob = bytearray(good)
        blob[rng.randrange(4)] ^= 1 << rng.randrange(8)
        return bytes(blob)
    if kind == "truncated_header":
        return good[: rng.randint(8, _header_end(good) - 2)]
    raise ValueError(f"unknown damage kind {kind!r}")


# --------------------------------------------------------------------------- driver
_WORKER: dict[str, Any] = {}
_BATCH = 500  # frames per task: large enough to amortise the first-frame encode


def _init_worker(templates: list[Template], out_dir: str, width: int, height: int) -> None:
    _WORKER.update(templates=templates, out_dir=Path(out_dir), width=width, height=height)


def _write_batch(batch: tuple[int, list[int]]) -> int:
    """Write consecutive frames of one template (one binding call per worker)."""
    tid, frames = batch
    t = _WORKER["templates"][tid]
    total = 0
    for frame in frames:
        path = _WORKER["out_dir"] / t.relpath(frame)
        if frame == frames[0]:
            path.parent.mkdir(parents=True, exist_ok=True)
        data = render_file(t, frame, _WORKER["width"], _WORKER["height"])
        path.write_bytes(data)
        total += len(data)
    return total


def _frame_counts(files: int, templates: int) -> list[int]:
    return [files // templates + (1 if i < files % templates else 0) for i in range(templates)]


def generate(
    out_dir: str | os.PathLike[str],
    files: int,
    templates: int = 40,
    seed: int = 0,
    damaged: int = 0,
    width: int = 16,
    height: int = 16,
    jobs: int = 0,
    quiet: bool = True,
) -> Path:
    """Write ``files`` valid EXRs plus ``damaged`` broken ones; return the manifest path.

    ``jobs=0`` picks 1 process for small trees and up to 2 otherwise; output is
    identical either way. Only each sequence's first frame is encoded by the
    binding (~1-3 ms per part), later frames are patched copies (~60 us), so
    large trees are bound by file-system writes. Existing files are
    overwritten, nothing is deleted.
    """
    if files < 0 or damaged < 0 or templates < 1 or width < 1 or height < 1:
        raise ValueError("files/damaged must be >= 0; templates, width, height >= 1")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmpl = make_templates(templates, seed)
    counts = _frame_counts(files, templates)
    tasks = [(t.template_id, t.first_frame + i) for t, n in zip(tmpl, counts, strict=True) for i in range(n)]
    if jobs <= 0:
        jobs = 1 if files < 256 else min(2, os.cpu_count() or 1)

    # Batches never mix templates, so each sequence's binding-written first
    # frame is built by as few workers as possible.
    batches = [
        (t.template_id, [t.first_frame + i for i in range(lo, min(n, lo + _BATCH))])
        for t, n in zip(tmpl, counts, strict=True)
        for lo in range(0, n, _BATCH)
    ]
    init_args = (tmpl, str(out), width, height)
    if jobs == 1:
        _init_worker(*init_args)
        total_bytes = sum(map(_write_batch, batches))
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        with multiprocessing.get_context(method).Pool(jobs, _init_worker, init_args) as pool:
            total_bytes = sum(pool.imap_unordered(_write_batch, batches))

    rows = [(tmpl[i].relpath(f), i, tmpl[i].show, tmpl[i].layer, f, 0) for i, f in tasks]
    used = [t for t, n in zip(tmpl, counts, strict=True) if n > 0] or tmpl[:1]
    next_frame = {t.template_id: t.first_frame + n for t, n in zip(tmpl, counts, strict=True)}
    rng = random.Random(f"gen_tree:{seed}:damaged")
    for k in range(damaged):
        t = used[k % len(used)]
        frame = next_frame[t.template_id]
        next_frame[t.template_id] += 1
        # Damage the sequence's first frame as written (cheaper than re-encoding here).
        first = out / t.relpath(t.first_frame)
        good = first.read_bytes() if counts[t.template_id] else render_file(t, frame, width, height)
        blob = damage(good, DAMAGE_KINDS[k % len(DAMAGE_KINDS)], rng)
        path = out / t.relpath(frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        total_bytes += len(blob)
        rows.append((t.relpath(frame), t.template_id, t.show, t.layer, frame, 1))

    rows.sort()
    manifest = out / MANIFEST_NAME
    lines = ["\t".join(MANIFEST_COLUMNS)] + ["\t".join(map(str, r)) for r in rows]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elapsed = time.perf_counter() - start
    if not quiet:
        rate = (files + damaged) / elapsed if elapsed > 0 else float("inf")
        print(
            f"gen_tree: {files} files + {damaged} damaged from {templates} templates "
            f"({total_bytes / 1e6:.1f} MB) in {elapsed:.2f}s = {rate:.0f} files/s, "
            f"{jobs} job(s) -> {manifest}"
        )
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--files", type=int, required=True, help="valid EXR files to write")
    ap.add_argument("--templates", type=int, default=40, help="render templates / image sequences (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--damaged", type=int, default=0, help="extra damaged files (header unreadable)")
    ap.add_argument("--width", type=int, default=16, help="data window width (pixels written)")
    ap.add_argument("--height", type=int, default=16, help="data window height")
    ap.add_argument("--jobs", type=int, default=0, help="processes (0 = auto: up to 2)")
    args = ap.parse_args(argv)
    generate(
        args.out_dir,
        args.files,
        templates=args.templates,
        seed=args.seed,
        damaged=args.damaged,
        width=args.width,
        height=args.height,
        jobs=args.jobs,
        quiet=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
