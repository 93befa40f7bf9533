"""Header embeddings: feature tokens -> XXH64 -> signed hashed rows -> L2 norm.

``embed_chunk`` is the only entry point the crawler needs. Tokens come from
``features`` (pyarrow.compute over whole tables), the two numba kernels in
``kernels`` do the array work. Every row depends only on its own file's (or
channel's) tokens, so vectors are identical whichever chunk a file lands in,
in any process, on any machine.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa

from ..catalog.schema import EMBEDDING_DIM, FINGERPRINT_DIM
from ..columnar import first_rows
from ..crawl.columns import RawChunk, Signatures
from .cache import VectorCache
from .features import (
    SIGNATURE_NAMES,
    attribute_codes,
    channel_signatures,
    channel_token_ids,
    file_signatures,
    file_token_ids,
)
from .kernels import hash_strings, scatter_rows

__all__ = ["SIGNATURE_NAMES", "VectorCache", "embed_chunk", "embed_files", "embed_channels", "embed_channels_distinct",
           "embed_distinct"]


def embed_files(raw: RawChunk, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """float32[n_files, dim] unit rows: one per row of ``raw.files``."""
    rows, ids, weights, dictionary = file_token_ids(raw)
    return scatter_rows(rows, hash_strings(dictionary)[ids], weights, raw.files.num_rows, dim)


def embed_channels(raw: RawChunk, dim: int = FINGERPRINT_DIM) -> np.ndarray:
    """float32[n_channels, dim] unit rows: one fingerprint per row of ``raw.channels``."""
    rows, ids, weights, dictionary = channel_token_ids(raw)
    return scatter_rows(rows, hash_strings(dictionary)[ids], weights, raw.channels.num_rows, dim)


def embed_channels_distinct(raw: RawChunk, dim: int = FINGERPRINT_DIM) -> tuple[np.ndarray, np.ndarray]:
    """(inverse int64[n_channels], float32[k, dim]): ``embed_channels(raw)`` equals ``rows[inverse]``,
    computed once per distinct channel signature instead of once per channel."""
    first, inverse = channel_signatures(raw)
    return inverse, embed_channels(_channels_subset(raw, first), dim)


def _channels_subset(raw: RawChunk, rows: np.ndarray) -> RawChunk:
    """The chunk with only channel rows ``rows`` (their parts stay, for the channel context)."""
    return replace(raw, channels=raw.channels.take(pa.array(rows)), signatures=None)


def _files_subset(raw: RawChunk, keep: np.ndarray) -> RawChunk:
    """The chunk of files ``keep`` (file indices), renumbered 0..len(keep)-1 in that order."""
    new = np.full(raw.files.num_rows, -1, np.int64)
    new[keep] = np.arange(len(keep))

    def rows(table: pa.Table) -> pa.Table:
        f = new[table["file_index"].to_numpy()] if table.num_rows else np.zeros(0, np.int64)
        sel = f >= 0
        i = table.schema.get_field_index("file_index")
        out = table.filter(pa.array(sel))
        return out.set_column(i, table.schema.field(i), pa.array(f[sel].astype(np.int32)))

    files = raw.files.take(pa.array(keep))
    files = files.set_column(files.schema.get_field_index("file_index"), files.schema.field("file_index"),
                             pa.array(np.arange(len(keep), dtype=np.int32)))
    return replace(raw, files=files, parts=rows(raw.parts), channels=rows(raw.channels),
                   attributes=rows(raw.attributes), signatures=None)


def embed_distinct(raw: RawChunk, cache: VectorCache | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(file inverse, file vectors, channel inverse, channel fingerprints): ``embed_chunk(raw)``
    equals ``(files[file_inverse], channels[channel_inverse])``, each vector computed once per
    distinct signature (the frames of a sequence share one).

    With the C scanner's ``Signatures`` (made with ``SIGNATURE_NAMES``) the signatures cost
    nothing here, and ``cache`` keeps vectors across chunks; otherwise they are computed
    from the columns.
    """
    sig = raw.signatures
    if sig is not None and sig.names == SIGNATURE_NAMES:
        return _embed_signed(raw, sig, cache if cache is not None else VectorCache())
    ch_inverse, fingerprints = embed_channels_distinct(raw)
    attr_codes = attribute_codes(raw.attributes["value_index"].to_numpy(), raw.values)
    reps, f_inverse = file_signatures(raw, ch_inverse, attr_codes)
    return f_inverse, embed_files(_files_subset(raw, reps)), ch_inverse, fingerprints


def _embed_signed(raw: RawChunk, sig: Signatures, cache: VectorCache) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ch_inverse = sig.channels.astype(np.int64)
    f_inverse = sig.files.astype(np.int64)
    ch_first, f_first = first_rows(ch_inverse), first_rows(f_inverse)

    def channels(new: np.ndarray) -> np.ndarray:
        return embed_channels(_channels_subset(raw, ch_first[new]))

    def files(new: np.ndarray) -> np.ndarray:
        return embed_files(_files_subset(raw, f_first[new]))

    fingerprints = cache.rows(sig.channel_keys, channels, FINGERPRINT_DIM)
    return f_inverse, cache.rows(sig.file_keys, files, EMBEDDING_DIM), ch_inverse, fingerprints


def embed_chunk(raw: RawChunk) -> tuple[np.ndarray, np.ndarray]:
    """(file vectors float32[n_files, 384], channel fingerprints float32[n_channels, 128])."""
    return embed_files(raw), embed_channels(raw)
