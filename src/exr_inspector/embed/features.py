"""Feature tokens of a RawChunk, computed column-wise with pyarrow.compute.

Each token kind is one vectorized expression over a whole table of the chunk (the
only Python loop is over the fixed list of kinds), so a chunk of 100k files costs
the same number of Python steps as a chunk of ten. Output: ``(row int64, token
pa.string array, weight float32)``.

File tokens, ``row`` = ``file_index``. A file holds each token once (max weight), so
multipart files do not count their shared attributes once per part; entries are
sorted by (row, token), an order that does not depend on the rest of the chunk.

=========================================  ======  ==============================================
token                                      weight  from
=========================================  ======  ==============================================
``ch:<channel name>``                      1.0     channels (the AOV layout)
``layer:<layer>``                          1.0     channels (``layer:`` alone = default layer)
``chtype:<channel>:<HALF|FLOAT|UINT>``     0.5     channels
``chsamp:<channel>:<x>x<y>``               1.0     channels, subsampled ones only
``comp:<compression>``                     1.0     parts
``ptype:<part type>``                      0.5     parts
``tiled`` / ``deep``                       1.0     parts
``tiles:<level mode>:<w>x<h>``             0.5     parts, tiled only
``res:<display w>x<h>``                    1.0     parts: display window (the data window drifts)
``view:<view>``                            0.5     parts
``parts:<n>``                              1.0     files
``attr:<name>``                            0.5     every attribute: that it exists, not its value
``attr:<name>=<enum>``                     1.0     ``ENUM_VALUE_ATTRS`` (lineOrder, envmap, ...)
``attr:<name>=<text>``                     1.0     ``VALUE_ATTRS``: show/shot/owner-like strings
``attr:<name>=<first word>``               1.0     ``FAMILY_ATTRS``: software family (Arnold, Maya)
``attr:<name>=<value json>``               0.5     ``SETTING_ATTRS``: per-show settings (fps, ...)
=========================================  ======  ==============================================

Values become tokens only where they are low-cardinality by construction: per-frame
values (capDate, timeCode, dataWindow, render times, camera matrices, free-text
comments) only ever give their ``attr:<name>`` presence token, so every frame of a
sequence gets the same tokens and the same vector. Compression is ``comp:`` only.
The weights make the AOV layout (ch/layer/chtype: ~60% of a generated file's squared norm) count
most, then storage and production settings, then which attributes exist.

Channel fingerprint tokens, ``row`` = channel row in ``raw.channels``, in this fixed
order within a row: what makes two channels "the same AOV channel", so the same
channel of the same layout gets the same fingerprint in every file.

==========================  ======  =========================================
token                       weight  from
==========================  ======  =========================================
``name:<channel name>``     1.0     channels
``component:<component>``   1.0     channels
``layer:<layer>``           1.0     channels
``type:<pixel type>``       1.0     channels
``samp:<x>x<y>``            0.5     channels
``plinear``                 0.5     channels, pLinear set only
``ptype:<part type>``       0.25    the channel's part (context)
``comp:<compression>``      0.25    the channel's part (context)
==========================  ======  =========================================
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..columnar import combined, first_rows, row_codes
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
# The attributes the part and channel columns that make tokens are read from: the chlist,
# compression, part type (with the flags and whether ``tiles`` exists), tiling, display
# window and view.
STRUCTURE_ATTRS = ("channels", "compression", "type", "tiles", "displayWindow", "view")
# The attributes whose value, not only their name, makes an ``attr:`` token.
VALUED_ATTRS = ENUM_VALUE_ATTRS + VALUE_ATTRS + FAMILY_ATTRS + SETTING_ATTRS
# Every attribute whose value makes a file token: the C scanner's file signature holds these
# whole, and only the names of the others (``Signatures``).
SIGNATURE_NAMES = STRUCTURE_ATTRS + VALUED_ATTRS

Tokens = tuple[np.ndarray, pa.Array, np.ndarray]
# (row, token id, weight, dictionary): ids index a chunk-wide dictionary of distinct tokens,
# so strings are built, sorted and hashed once per distinct token, not once per row.
TokenIds = tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]
Kind = tuple[pa.Array, pa.Array, float]  # (row of each token, tokens (plain or dictionary), weight)


def _join(*parts: pa.Array | pa.ChunkedArray | str) -> pa.ChunkedArray:
    """Concatenate string columns and literals element-wise; any null part gives a null token."""
    return pc.binary_join_element_wise(*parts, "")


def _prefixed(prefix: str, col: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """``prefix + col`` as a dictionary array: the join runs once per distinct value."""
    enc = pc.dictionary_encode(combined(col))
    return pa.DictionaryArray.from_arrays(enc.indices, combined(_join(prefix, enc.dictionary)))


def _str(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(col, pa.string())


def _where(table: pa.Table, mask: pa.ChunkedArray) -> pa.Table:
    """Rows of ``table`` where ``mask`` is true (null counts as false): filter before building strings."""
    return table.filter(pc.fill_null(mask, False))


def _named(attrs: pa.Table, names: tuple[str, ...]) -> pa.Table:
    return _where(attrs, pc.is_in(attrs["attr_name"], value_set=pa.array(names, pa.string())))


def _const(table: pa.Table, token: str) -> pa.Array:
    """The same token once per row of ``table``."""
    return pa.repeat(pa.scalar(token), table.num_rows)


def _ids(kinds: list[Kind]) -> TokenIds:
    """Concatenate the kinds into (row, token id, weight, dictionary), null tokens dropped.

    Each kind's tokens are (or become) a dictionary array; the kind dictionaries are
    merged into one dictionary of distinct strings, and every entry keeps only an id.
    """
    rows, ids, weights, dicts = [], [], [], []
    base = 0
    for r, t, w in kinds:
        t = combined(t)
        enc = t if pa.types.is_dictionary(t.type) else pc.dictionary_encode(t)
        idx = enc.indices
        valid = pc.is_valid(idx).to_numpy(zero_copy_only=False)
        rows.append(pc.cast(combined(r), pa.int64()).to_numpy(zero_copy_only=False)[valid])
        ids.append(idx.filter(pc.is_valid(idx)).to_numpy().astype(np.int64) + base)
        weights.append(np.full(int(valid.sum()), w, np.float32))
        d = enc.dictionary.cast(pa.string())
        dicts.append(d)
        base += len(d)
    merged = pc.dictionary_encode(pa.concat_arrays(dicts) if dicts else pa.array([], pa.string()))
    remap = merged.indices.to_numpy().astype(np.int64)
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    tid = remap[np.concatenate(ids)] if ids else np.zeros(0, np.int64)
    weight = np.concatenate(weights) if weights else np.zeros(0, np.float32)
    return row, tid, weight, merged.dictionary


def _unique_sorted(row: np.ndarray, tid: np.ndarray, weight: np.ndarray, dictionary: pa.Array) -> TokenIds:
    """One entry per (row, token), max weight, sorted by (row, token string): canonical and chunk-free.

    Strings are compared once per distinct token (the dictionary's sort order); the
    per-entry work is on integers: the sorted unique keys row * n_distinct + rank(token).
    """
    if not len(tid):
        return row, tid, weight, dictionary
    n = len(dictionary)
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    key = row * n + rank[tid]
    perm = np.argsort(key, kind="stable")
    key = key[perm]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    unique = key[first]
    return unique // n, order[unique % n], np.maximum.reduceat(weight[perm], first).astype(np.float32), dictionary


def _strings(t: TokenIds) -> Tokens:
    row, tid, weight, dictionary = t
    return row, dictionary.take(pa.array(tid, pa.int64())), weight


def file_tokens(raw: RawChunk) -> Tokens:
    """Per-file tokens, unique per (file, token) and sorted by (row, token): canonical and chunk-free."""
    return _strings(file_token_ids(raw))


def file_token_ids(raw: RawChunk) -> TokenIds:
    """``file_tokens`` as ids into a dictionary of the chunk's distinct tokens."""
    ch, parts, attrs = raw.channels, raw.parts, raw.attribute_rows()
    sub = _where(ch, pc.or_(pc.not_equal(ch["x_sampling"], 1), pc.not_equal(ch["y_sampling"], 1)))
    tiled = _where(parts, parts["is_tiled"])
    deep = _where(parts, parts["is_deep"])
    enum = _named(attrs, ENUM_VALUE_ATTRS + VALUE_ATTRS)
    family = _named(attrs, FAMILY_ATTRS)
    setting = _named(attrs, SETTING_ATTRS)
    first_word = pc.list_element(pc.split_pattern(family["value_text"], " ", max_splits=1), 0)
    kinds: list[Kind] = [
        (ch["file_index"], _prefixed("ch:", ch["channel_name"]), 1.0),
        (ch["file_index"], _prefixed("layer:", ch["layer_name"]), 1.0),
        (ch["file_index"], _join("chtype:", ch["channel_name"], ":", ch["channel_type"]), 0.5),
        (sub["file_index"], _join("chsamp:", sub["channel_name"], ":", _str(sub["x_sampling"]), "x",
                                  _str(sub["y_sampling"])), 1.0),
        (parts["file_index"], _join("comp:", parts["compression"]), 1.0),
        (parts["file_index"], _join("ptype:", parts["part_type"]), 0.5),
        (tiled["file_index"], _const(tiled, "tiled"), 1.0),
        (deep["file_index"], _const(deep, "deep"), 1.0),
        (tiled["file_index"], _join("tiles:", tiled["tile_level_mode"], ":", _str(tiled["tile_width"]), "x",
                                    _str(tiled["tile_height"])), 0.5),
        (parts["file_index"], _join("res:", _str(parts["display_width"]), "x", _str(parts["display_height"])), 1.0),
        (parts["file_index"], _join("view:", parts["view_name"]), 0.5),
        (raw.files["file_index"], _join("parts:", _str(raw.files["multipart_count"])), 1.0),
        (attrs["file_index"], _prefixed("attr:", attrs["attr_name"]), 0.5),
        (enum["file_index"], _join("attr:", enum["attr_name"], "=", enum["value_text"]), 1.0),
        (family["file_index"], _join("attr:", family["attr_name"], "=", first_word), 1.0),
        (setting["file_index"], _join("attr:", setting["attr_name"], "=", setting["value_json"]), 0.5),
    ]
    return _unique_sorted(*_ids(kinds))


def channel_tokens(raw: RawChunk) -> Tokens:
    """Per-channel fingerprint tokens, row-major; within a row, in the fixed kind order above."""
    return _strings(channel_token_ids(raw))


def channel_token_ids(raw: RawChunk) -> TokenIds:
    """``channel_tokens`` as ids into a dictionary of the chunk's distinct tokens."""
    ch = raw.channels
    n = ch.num_rows
    ctx = _channel_context(raw)
    kinds = [
        (_prefixed("name:", ch["channel_name"]), 1.0),
        (_prefixed("component:", ch["component_name"]), 1.0),
        (_prefixed("layer:", ch["layer_name"]), 1.0),
        (_prefixed("type:", ch["channel_type"]), 1.0),
        (_join("samp:", _str(ch["x_sampling"]), "x", _str(ch["y_sampling"])), 0.5),
        (pc.if_else(pc.fill_null(ch["p_linear"], False), pa.scalar("plinear"), pa.scalar(None, pa.string())), 0.5),
        (_prefixed("ptype:", ctx["part_type"]), 0.25),
        (_prefixed("comp:", ctx["compression"]), 0.25),
    ]
    # Kind-major -> row-major: entry k * n + r moves to r * n_kinds + k, nulls dropped after.
    base = np.arange(n, dtype=np.int64)
    _, tid, _, dictionary = _ids([(pa.array(base), t, w) for t, w in kinds])
    valid = np.concatenate([pc.is_valid(combined(t)).to_numpy(zero_copy_only=False) for t, _ in kinds])
    k = len(kinds)
    full = np.full(k * n, -1, np.int64)
    full[valid] = tid
    perm = (np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()
    full = full[perm]
    row = np.repeat(base, k)
    weight = np.tile(np.array([w for _, w in kinds], np.float32), n)
    keep = full >= 0
    return row[keep], full[keep], weight[keep], dictionary


def _channel_context(raw: RawChunk) -> pa.Table:
    """part_type and compression of each channel's part (null where the part is absent)."""
    ch, parts = raw.channels, raw.parts
    n = ch.num_rows
    if not parts.num_rows:
        return pa.table({"part_type": pa.nulls(n, pa.string()), "compression": pa.nulls(n, pa.string())})
    # The channel's part row, by (file_index, part_index) key: no reliance on table order.
    ckey = pc.add(pc.multiply(pc.cast(ch["file_index"], pa.int64()), 1 << 32), pc.cast(ch["part_index"], pa.int64()))
    pkey = pc.add(pc.multiply(pc.cast(parts["file_index"], pa.int64()), 1 << 32),
                  pc.cast(parts["part_index"], pa.int64()))
    where = pc.index_in(ckey, value_set=pkey.combine_chunks())
    return parts.select(["part_type", "compression"]).take(where)


def channel_signatures(raw: RawChunk) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse): rows with equal fingerprint inputs, i.e. the same AOV channel of the same
    layout, share a signature, and row r's fingerprint is row ``first[inverse[r]]``'s.

    The inputs are exactly what ``channel_token_ids`` reads; a chunk of 21k channels has a
    few hundred signatures, so the fingerprint tokens are built once per signature.
    """
    ch = raw.channels
    n = ch.num_rows
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ctx = _channel_context(raw)
    key = row_codes([ch["channel_name"], ch["component_name"], ch["layer_name"], ch["channel_type"],
                     ch["x_sampling"], ch["y_sampling"], pc.fill_null(ch["p_linear"], False), ctx["part_type"],
                     ctx["compression"]])
    return first_rows(key), key


def attribute_codes(value_index: np.ndarray, values: pa.Table) -> np.ndarray:
    """Per attribute row: its name, or its whole value where ``file_token_ids`` makes a token of it.

    From the chunk's distinct values (``RawChunk.values``): work per distinct value, then one
    take per row.
    """
    names = values["attr_name"]
    valued = pc.fill_null(pc.is_in(names, value_set=pa.array(
        VALUED_ATTRS, pa.string())), False)
    k = values.num_rows
    per_value = np.where(valued.to_numpy(zero_copy_only=False), k + np.arange(k), row_codes([names]))
    return per_value[value_index]


def file_signatures(raw: RawChunk, channel_codes: np.ndarray, attr_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse): files whose token inputs are exactly equal share a signature, and file
    f's tokens are those of file ``first[inverse[f]]``. Every frame of a sequence does.

    A file's signature is the byte string of its rows' codes, table-tagged and in row order
    (attributes, channels, parts, then multipart_count): equal strings, equal inputs, so
    equal tokens; order only makes the test stricter. ``channel_codes``: equal wherever the
    channel's file-token inputs are equal (``channel_signatures``' inverse is); ``attr_codes``
    likewise per attribute row (``attribute_codes``).
    """
    files, parts = raw.files, raw.parts
    n = files.num_rows
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    part_codes = row_codes([parts[c] for c in ("compression", "part_type", "is_tiled", "is_deep", "tile_level_mode",
                                            "tile_width", "tile_height", "display_width", "display_height",
                                            "view_name")]) if parts.num_rows else np.zeros(0, np.int64)
    tables = [  # (file of each row, code of each row), each tagged with its table
        (raw.attributes["file_index"], attr_codes),
        (raw.channels["file_index"], channel_codes),
        (parts["file_index"], part_codes),
        (files["file_index"], row_codes([files["multipart_count"]])),
    ]
    rows = [(combined(f).to_numpy(zero_copy_only=False).astype(np.int64), c) for f, c in tables]
    counts = np.stack([np.bincount(f, minlength=n) for f, _ in rows])  # [table, file]
    ends = np.cumsum(counts.sum(0))
    starts = ends - counts.sum(0)
    data = np.empty(int(ends[-1]), np.int64)
    before = np.zeros(n, np.int64)  # elements of earlier tables in each file's segment
    for tag, (f, codes) in enumerate(rows):
        if len(f) > 1 and (f[1:] < f[:-1]).any():  # the scanners emit rows file by file: rarely needed
            order = np.argsort(f, kind="stable")
            f, codes = f[order], codes[order]
        rank = np.arange(len(f)) - (np.cumsum(counts[tag]) - counts[tag])[f]
        data[starts[f] + before[f] + rank] = codes * 4 + tag
        before += counts[tag]
    offsets = pa.py_buffer((np.concatenate([[0], ends]) * 8).astype(np.int32))
    strings = pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(data)])
    code = row_codes([strings])
    return first_rows(code), code
