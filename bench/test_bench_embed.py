"""pytest-benchmark of the embedding kernels and of embed_chunk on a generated tree.

    python -m pytest -q bench/test_bench_embed.py --benchmark-only --benchmark-columns=median,ops

``extra_info`` carries the rates the issue talks about (rows/s, tokens/s, files/s);
one benchmark "op" is one call over the whole batch.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exr_inspector.catalog.schema import EMBEDDING_DIM  # noqa: E402
from exr_inspector.crawl.columns import scan_chunk  # noqa: E402
from exr_inspector.embed import embed_chunk, embed_distinct  # noqa: E402
from exr_inspector.embed.kernels import hash_strings, scatter_rows  # noqa: E402

from gen_tree import generate  # noqa: E402

ROWS, TOKENS_PER_ROW = 10_000, 60


@pytest.fixture(scope="module")
def triples() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(ROWS, dtype=np.int64), TOKENS_PER_ROW)
    hashes = rng.integers(0, 2**64, rows.size, dtype=np.uint64)
    weights = rng.choice(np.array([0.5, 1.0], np.float32), rows.size)
    return rows, hashes, weights


@pytest.fixture(scope="module")
def tokens() -> pa.Array:
    """Header-like tokens: 600k strings of 6-40 bytes."""
    rng = np.random.default_rng(1)
    words = [f"attr:{w}" for w in ("capDate", "owner=jdoe", "software=Arnold", "cryptomatte/1a2b3c4/name")]
    words += [f"ch:{layer}.{c}" for layer in ("diffuse", "specular", "N", "P", "CryptoObject00") for c in "RGBAXYZ"]
    return pa.array([words[i] for i in rng.integers(0, len(words), ROWS * TOKENS_PER_ROW)])


def test_scatter_rows(benchmark, triples) -> None:
    rows, hashes, weights = triples
    scatter_rows(rows, hashes, weights, ROWS, EMBEDDING_DIM)  # compile / load cache
    out = benchmark(scatter_rows, rows, hashes, weights, ROWS, EMBEDDING_DIM)
    assert out.shape == (ROWS, EMBEDDING_DIM)
    benchmark.extra_info["rows_per_s"] = ROWS / benchmark.stats.stats.median
    benchmark.extra_info["tokens_per_s"] = rows.size / benchmark.stats.stats.median


def test_hash_strings(benchmark, tokens: pa.Array) -> None:
    hash_strings(tokens.slice(0, 10))
    out = benchmark(hash_strings, tokens)
    assert out.shape == (len(tokens),)
    benchmark.extra_info["tokens_per_s"] = len(tokens) / benchmark.stats.stats.median


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory):
    """1000 scanned files of 20 templates."""
    root = tmp_path_factory.mktemp("bench_embed")
    manifest = generate(root, 1000, templates=20, seed=0)
    paths = [str(root / r["relpath"]) for r in csv.DictReader(manifest.open(encoding="utf-8"), delimiter="\t")]
    return scan_chunk(paths, native=True)


def test_embed_chunk(benchmark, scanned) -> None:
    """Features + kernels for every file and channel row (the reference the crawl must equal)."""
    embed_chunk(scanned)
    files_v, _ = benchmark(embed_chunk, scanned)
    assert files_v.shape == (scanned.files.num_rows, EMBEDDING_DIM)
    benchmark.extra_info["files_per_s"] = scanned.files.num_rows / benchmark.stats.stats.median


def test_embed_distinct(benchmark, scanned) -> None:
    """What the crawl's readers run: one vector per file signature and per channel signature."""
    embed_distinct(scanned)
    f_inv, f_vecs, _, _ = benchmark(embed_distinct, scanned)
    assert f_vecs[f_inv].shape == (scanned.files.num_rows, EMBEDDING_DIM)
    benchmark.extra_info["files_per_s"] = scanned.files.num_rows / benchmark.stats.stats.median
