"""Header embeddings: feature tokens -> XXH64 -> signed hashed rows -> L2 norm.

``embed_chunk`` is the only entry point the crawler needs. Tokens come from
``features`` (pyarrow.compute over whole tables), the two numba kernels in
``kernels`` do the array work. Every row depends only on its own file's (or
channel's) tokens, so vectors are identical whichever chunk a file lands in,
in any process, on any machine.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..catalog.schema import EMBEDDING_DIM, FINGERPRINT_DIM
from ..crawl.columns import RawChunk
from .features import channel_signatures, channel_token_ids, file_token_ids
from .kernels import hash_strings, scatter_rows

__all__ = ["embed_chunk", "embed_files", "embed_channels", "embed_channels_distinct"]


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
    sub = RawChunk(raw.files, raw.parts, raw.channels.take(pa.array(first)), raw.attributes, raw.errors)
    return inverse, embed_channels(sub, dim)


def embed_chunk(raw: RawChunk) -> tuple[np.ndarray, np.ndarray]:
    """(file vectors float32[n_files, 384], channel fingerprints float32[n_channels, 128])."""
    return embed_files(raw), embed_channels(raw)
