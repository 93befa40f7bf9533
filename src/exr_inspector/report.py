"""Human-readable rendering of a payload: what ``inspect`` prints without ``--json``."""

from __future__ import annotations

from itertools import groupby

import orjson


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def format_value(type_name: str, value) -> str:
    """One-line rendering of a canonical attribute value."""
    if type_name in ("box2i", "box2f"):
        (x0, y0), (x1, y1) = value["min"], value["max"]
        extra = f"  ({x1 - x0 + 1} x {y1 - y0 + 1})" if type_name == "box2i" else ""
        return f"({_num(x0)}, {_num(y0)}) - ({_num(x1)}, {_num(y1)}){extra}"
    if type_name in ("v2i", "v2f", "v2d", "v3i", "v3f", "v3d", "floatvector"):
        return "(" + ", ".join(_num(x) for x in value) + ")"
    if type_name in ("m33f", "m33d", "m44f", "m44d"):
        return " ".join("[" + " ".join(_num(x) for x in row) + "]" for row in value)
    if type_name == "chromaticities":
        return "  ".join(f"{k} ({_num(value[k][0])}, {_num(value[k][1])})" for k in ("red", "green", "blue", "white"))
    if type_name == "rational":
        n, d = value
        return f"{n}/{d}" + (f"  (~{n / d:.6g})" if d else "  (denominator 0)")
    if type_name == "tiledesc":
        return f"{value['x_size']} x {value['y_size']} tiles, {value['level_mode']}, rounding {value['rounding_mode']}"
    if type_name == "chlist":
        return f"{len(value)} channels"
    if type_name == "preview":
        return f"{value['width']} x {value['height']} preview image"
    if type_name == "string":
        return repr(value) if isinstance(value, str) else f"<not UTF-8, base64 {value['base64']}>"
    if type_name == "stringvector":
        return "[" + ", ".join(repr(s) if isinstance(s, str) else "<not UTF-8>" for s in value) + "]"
    if isinstance(value, dict) and "base64" in value:
        return f"<{len(value['base64']) * 3 // 4} bytes, type {value.get('type', type_name)}>"
    if isinstance(value, str | int | float):
        return _num(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _channel_lines(channels: list[dict]) -> list[str]:
    lines = []
    keyed = sorted(channels, key=lambda c: (c["layer"], c["component"]))
    for layer, group in groupby(keyed, key=lambda c: c["layer"]):
        group = list(group)
        comps = " ".join(c["component"] for c in group)
        types = sorted({c["type"] for c in group})
        sampling = {(c["x_sampling"], c["y_sampling"]) for c in group}
        samp = "" if sampling == {(1, 1)} else "  sampling " + ",".join(f"{x}x{y}" for x, y in sorted(sampling))
        lines.append(f"      {layer or '(default)':<24} {comps:<24} {'/'.join(types)}{samp}")
    return lines


def render_text(payload: dict) -> str:
    """A readable summary of one file: parts, channels grouped by layer, every attribute."""
    f = payload["file"]
    parts = payload["parts"]
    kinds = sorted({p["type"] for p in parts})
    head = [f"{f['path'] or '<bytes>'}",
            f"  {_human_size(f['size_bytes'])}, {len(parts)} part{'s' if len(parts) != 1 else ''}"
            f" ({', '.join(kinds)}), header {f['header_size']} bytes, flags 0x{f['flags']:x}"
            + (f", frame {f['frame_number']}" if f["frame_number"] is not None else "")]
    for p in parts:
        attrs = {a["name"]: a for a in reversed(p["attributes"])}
        label = f"  part {p['index']}"
        if p["name"] is not None:
            label += f" '{p['name']}'"
        label += f"  {p['type']}"
        if p["view"] is not None:
            label += f"  view={p['view']}"
        if "compression" in attrs:
            label += f"  {attrs['compression']['value']}"
        if "dataWindow" in attrs and attrs["dataWindow"]["type"] == "box2i":
            label += f"  data {format_value('box2i', attrs['dataWindow']['value'])}"
        head.append(label)
        chans = [c for c in payload["channels"] if c["part_index"] == p["index"]]
        head.append(f"    channels ({len(chans)}):")
        head.extend(_channel_lines(chans))
        head.append(f"    attributes ({len(p['attributes'])}):")
        width = max((len(a["name"]) for a in p["attributes"]), default=0)
        for a in p["attributes"]:
            head.append(f"      {a['name']:<{width}}  {a['type']:<14} {format_value(a['type'], a['value'])}")
    if payload["warnings"]:
        head.append(f"  warnings ({len(payload['warnings'])}):")
        for w in payload["warnings"]:
            where = f"part {w['part_index']}: " if w["part_index"] is not None else ""
            head.append(f"    [{w['code']}] {where}{w['message']}")
    return "\n".join(head)
