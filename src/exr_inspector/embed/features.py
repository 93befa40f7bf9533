"""Feature tokens of a RawChunk, computed column-wise with pyarrow.compute.

Each token kind is one vectorized expression over a whole table of the chunk (the
only Python loop is over the fixed list of kinds), so a chunk of 100k files costs
the same number of Python steps as a chunk of ten.

File tokens (``row`` = ``file_index``; one token per (file, token) pair, max weight):

====================================  ======  =============================================
token                                 weight  from
====================================  ======  =============================================
``ch:<channel name>``                 1.0     channels (the AOV layout)
``layer:<layer>``                     1.0     channels (``layer:`` = default layer)
``chtype:<channel>:<HALF|FLOAT|UINT>`` 0.5    channels
``chsamp:<channel>:<x>x<y>``          1.0     channels, subsampled ones only
``comp:<compression>``                1.0     parts
``ptype:<part type>``                 0.5     parts
``tiled`` / ``deep``                  1.0     parts
``tiles:<level mode>:<w>x<h>``        0.5     parts, tiled only
``res:<display w>x<h>``               1.0     parts (display window, never the drifting data window)
``view:<view>``                       0.5     parts
``parts:<n>``                         1.0     files
``attr:<name>``                       0.5     attributes: which attributes exist, not their values
``attr:<name>=<enum>``                1.0     enum attributes (lineOrder, envmap, deepImageState)
``attr:<name>=<text>``                1.0     ``VALUE_ATTRS``: show/shot-like production strings
``attr:<name>=<first word>``          1.0     ``FAMILY_ATTRS``: software family (``Arnold``, ``Maya``)
``attr:<name>=<json>``                0.5     ``SETTING_ATTRS``: per-show settings (fps, chromaticities)
====================================  ======  =============================================

Values are tokenised only where they are low-cardinality by construction: per-frame
values (capDate, timeCode, dataWindow, render times, camera matrices) only ever
contribute their ``attr:<name>`` presence token, so the frames of one sequence share
one embedding. Compression is ``comp:`` only (not also an ``attr:compression=`` token).

Channel fingerprint tokens (``row`` = channel row in ``raw.channels``): what makes
two channels "the same AOV channel", so files with the same layout get identical
fingerprints for it:

==============================  ======  ==========================================
token                           weight  from
==============================  ======  ==========================================
``name:<channel name>``         1.0     channels
``component:<component>``       1.0     channels
``layer:<layer>``               1.0     channels
``type:<pixel type>``           1.0     channels
``samp:<x>x<y>``                0.5     channels
``plinear``                     0.5     channels, pLinear set only
``ptype:<part type>``           0.25    the channel's part (context)
``comp:<compression>``          0.25    the channel's part (context)
==============================  ======  ==========================================
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..crawl.columns import RawChunk

# Production-hierarchy strings: few distinct values per show, shared by every frame.
VALUE_ATTRS = (
    "show", "project", "job", "sequence", "seq", "shot", "renderLayer", "layer", "owner", "artist",
    "name", "colorSpace", "oiio:ColorSpace", "ocio:colorspace", "colorInteropID",
)  # fmt: skip
# Version strings: only the first word (the family) is low-cardinality enough.
FAMILY_ATTRS = ("software", "renderSoftware", "renderer", "hostApp", "creator")
# Non-string per-show settings whose canonical JSON value is the token.
SETTING_ATTRS = ("framesPerSecond", "pixelAspectRatio", "chromaticities", "multiView")
# Enum attributes tokenised with their value (compression is covered by ``comp:``).
ENUM_VALUE_ATTRS = ("lineOrder", "envmap", "deepImageState")

Tokens = tuple[np.ndarray, pa.Array, np.ndarray]


def _join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate string columns and literals element-wise; any null part gives a null token."""
    return pc.binary_join_element_wise(*parts, "")


def _str(col: pa.Array) -> pa.Array:
    return pc.cast(col, pa.string())


def _const(token: str, mask: pa.Array) -> pa.Array:
    """``token`` where ``mask`` is true, null elsewhere (dropped later)."""
    return pc.if_else(mask, pa.scalar(token), pa.scalar(None, pa.string()))


def _in(col: pa.Array, names: tuple[str, ...]) -> pa.Array:
    return pc.fill_null(pc.is_in(col, value_set=pa.array(names, pa.string())), False)


def _masked(token: pa.Array, mask: pa.Array) -> pa.Array:
    return pc.if_else(mask, token, pa.scalar(None, pa.string()))


def _collect(kinds: list[tuple[pa.Array, pa.Array, float]]) -> pa.Table:
    """Stack (row, token, weight) of every kind into one table, nulls dropped."""
    tables = [
        pa.table({
            "row": pc.cast(rows, pa.int64()),
            "token": tokens,
            "weight": pa.array(np.full(len(tokens), weight, np.float32)),
        })
        for rows, tokens, weight in kinds
    ]
    table = pa.concat_tables(tables) if tables else pa.table({"row": [], "token": [], "weight": []})
    return table.filter(pc.is_valid(table["token"]))


def _finish(table: pa.Table) -> Tokens:
    token = table["token"].combine_chunks() if table.num_rows else pa.array([], pa.string())
    return (
        table["row"].to_numpy().astype(np.int64, copy=False),
        token,
        table["weight"].to_numpy().astype(np.float32, copy=False),
    )


def file_tokens(raw: RawChunk) -> Tokens:
    """Per-file tokens, unique per (file, token) and sorted by (row, token): canonical and chunk-free."""
    ch, parts, attrs = raw.channels, raw.parts, raw.attributes
    cfi, pfi, afi = ch["file_index"], parts["file_index"], attrs["file_index"]
    name, value = attrs["attr_name"], attrs["value_text"]
    subsampled = pc.or_(pc.not_equal(ch["x_sampling"], 1), pc.not_equal(ch["y_sampling"], 1))
    kinds = [
        (cfi, _join("ch:", ch["channel_name"]), 1.0),
        (cfi, _join("layer:", ch["layer_name"]), 1.0),
        (cfi, _join("chtype:", ch["channel_name"], ":", ch["channel_type"]), 0.5),
        (cfi, _masked(_join("chsamp:", ch["channel_name"], ":", _str(ch["x_sampling"]), "x",
                            _str(ch["y_sampling"])), pc.fill_null(subsampled, False)), 1.0),
        (pfi, _join("comp:", parts["compression"]), 1.0),
        (pfi, _join("ptype:", parts["part_type"]), 0.5),
        (pfi, _const("tiled", pc.fill_null(parts["is_tiled"], False)), 1.0),
        (pfi, _const("deep", pc.fill_null(parts["is_deep"], False)), 1.0),
        (pfi, _join("tiles:", parts["tile_level_mode"], ":", _str(parts["tile_width"]), "x",
                    _str(parts["tile_height"])), 0.5),
        (pfi, _join("res:", _str(parts["display_width"]), "x", _str(parts["display_height"])), 1.0),
        (pfi, _join("view:", parts["view_name"]), 0.5),
        (raw.files["file_index"], _join("parts:", _str(raw.files["multipart_count"])), 1.0),
        (afi, _join("attr:", name), 0.5),
        (afi, _masked(_join("attr:", name, "=", value), _in(name, ENUM_VALUE_ATTRS + VALUE_ATTRS)), 1.0),
        (afi, _masked(_join("attr:", name, "=", pc.list_element(pc.split_pattern(value, " ", max_splits=1), 0)),
                      _in(name, FAMILY_ATTRS)), 1.0),
        (afi, _masked(_join("attr:", name, "=", attrs["value_json"]), _in(name, SETTING_ATTRS)), 0.5),
    ]
    table = _collect(kinds)
    if table.num_rows:
        table = table.group_by(["row", "token"]).aggregate([("weight", "max")]).rename_columns(
            ["row", "token", "weight"])
        table = table.sort_by([("row", "ascending"), ("token", "ascending")])
    return _finish(table)


def channel_tokens(raw: RawChunk) -> Tokens:
    """Per-channel fingerprint tokens, sorted by row; within a row, in the fixed kind order above."""
    ch, parts = raw.channels, raw.parts
    n = ch.num_rows
    rows = pa.array(np.arange(n, dtype=np.int64))
    # The channel's part row, by (file_index, part_index) key: no reliance on table order.
    ckey = pc.add(pc.multiply(pc.cast(ch["file_index"], pa.int64()), 1 << 32), pc.cast(ch["part_index"], pa.int64()))
    pkey = pc.add(pc.multiply(pc.cast(parts["file_index"], pa.int64()), 1 << 32),
                  pc.cast(parts["part_index"], pa.int64()))
    where = pc.index_in(ckey, value_set=pkey.combine_chunks() if n else pa.array([], pa.int64()))
    part = parts.take(pc.fill_null(where, 0)) if parts.num_rows else None

    def ctx(col: str) -> pa.Array:
        if part is None:
            return pa.nulls(n, pa.string())
        return _masked(part[col], pc.is_valid(where))

    kinds = [
        (rows, _join("name:", ch["channel_name"]), 1.0),
        (rows, _join("component:", ch["component_name"]), 1.0),
        (rows, _join("layer:", ch["layer_name"]), 1.0),
        (rows, _join("type:", ch["channel_type"]), 1.0),
        (rows, _join("samp:", _str(ch["x_sampling"]), "x", _str(ch["y_sampling"])), 0.5),
        (rows, _const("plinear", pc.fill_null(ch["p_linear"], False)), 0.5),
        (rows, _join("ptype:", ctx("part_type")), 0.25),
        (rows, _join("comp:", ctx("compression")), 0.25),
    ]
    table = _collect(kinds)
    if table.num_rows:  # stable: keeps the kind order within a row
        table = table.take(pc.sort_indices(table["row"]))
    return _finish(table)
