"""Embeddings: kernels equal their references, vectors are deterministic and chunk-free, similar is near."""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from exr_inspector.catalog.schema import EMBEDDING_DIM, FINGERPRINT_DIM
from exr_inspector.crawl.batch import build_batch
from exr_inspector.crawl.columns import RawChunk, scan_chunk
from exr_inspector.embed import embed_channels_distinct, embed_chunk, embed_distinct
from exr_inspector.embed.features import (
    attribute_codes,
    channel_signatures,
    channel_tokens,
    file_signatures,
    file_tokens,
)
from exr_inspector.embed.kernels import (
    JIT_ENV,
    hash_strings,
    hash_tokens,
    hash_tokens_ref,
    scatter_rows,
    scatter_rows_ref,
    scatter_sorted,
    string_buffers,
)

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from gen_tree import generate  # noqa: E402

PER_FRAME = ("capDate", "timeCode", "dataWindow", "worldToCamera", "worldToNDC", "render_time", "comments")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], np.ndarray]:
    """A small generated tree: sorted paths and their template ids (5 templates x 8 frames)."""
    root = tmp_path_factory.mktemp("embed_tree")
    manifest = generate(root, 40, templates=5, seed=3)
    rows = sorted(csv.DictReader(manifest.open(encoding="utf-8"), delimiter="\t"), key=lambda r: r["relpath"])
    return [str(root / r["relpath"]) for r in rows], np.array([int(r["template_id"]) for r in rows])


@pytest.fixture(scope="module")
def whole(tree: tuple[list[str], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    raw = scan_chunk(tree[0], native=True)
    assert raw.errors.num_rows == 0
    return embed_chunk(raw)


# --------------------------------------------------------------------------- hash_tokens
def _random_strings(rng: np.random.Generator, n: int) -> list[str]:
    alphabet = list("abcXYZ019:._=/ ") + ["é", "漢", "🎞"]
    lengths = rng.choice([0, 1, 3, 4, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 100, 300], size=n)
    return ["".join(rng.choice(alphabet, size=k)) for k in lengths]


def _xxh(strings: list[str]) -> np.ndarray:
    return np.array([xxhash.xxh64_intdigest(s.encode(), 0) for s in strings], np.uint64)


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_hash_tokens_equals_reference(kind: pa.DataType) -> None:
    """The kernel on the raw buffers, its reference and xxhash on the strings agree bit for bit."""
    strings = _random_strings(np.random.default_rng(0), 500)
    arr = pa.array(strings, kind)
    data, offsets = string_buffers(arr)
    assert offsets.dtype == (np.int64 if kind == pa.large_string() else np.int32)
    np.testing.assert_array_equal(hash_tokens(data, offsets), _xxh(strings))
    np.testing.assert_array_equal(hash_tokens_ref(data, offsets), _xxh(strings))
    np.testing.assert_array_equal(hash_strings(arr), _xxh(strings))


def test_hash_strings_slices_and_chunks() -> None:
    """Slices read from the right place in the parent's buffers; chunked arrays are combined."""
    strings = _random_strings(np.random.default_rng(1), 200)
    arr = pa.array(strings)
    for lo, hi in ((0, 0), (17, 67), (199, 200), (3, 200)):
        np.testing.assert_array_equal(hash_strings(arr.slice(lo, hi - lo)), _xxh(strings[lo:hi]))
        np.testing.assert_array_equal(hash_strings(pa.array(strings, pa.large_string()).slice(lo, hi - lo)),
                                      _xxh(strings[lo:hi]))
    chunked = pa.chunked_array([arr.slice(0, 70), arr.slice(70)])
    np.testing.assert_array_equal(hash_strings(chunked), _xxh(strings))
    assert hash_strings(pa.array([], pa.string())).shape == (0,)
    np.testing.assert_array_equal(hash_strings(pa.array(["", ""])), _xxh(["", ""]))


def test_hash_strings_refuses_nulls() -> None:
    with pytest.raises(ValueError):
        hash_strings(pa.array(["a", None]))


# --------------------------------------------------------------------------- compiled ahead of time
def test_crawl_runs_compiled_kernels_and_never_imports_numba(tree, tmp_path: Path) -> None:
    """The build compiled the kernels with numba's AOT compiler: a crawl's processes skip
    numba's import and LLVM (~0.35 s and ~100 MB each)."""
    code = ("import sys; from exr_inspector.catalog.base import open_catalog; from exr_inspector.crawl.pipeline import crawl;"
            "from exr_inspector.embed import kernels;"
            "cat = open_catalog(sys.argv[2]); s = crawl([sys.argv[1]], cat, workers=1); cat.close();"
            "print(kernels.BACKEND, s.files, 'numba' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != JIT_ENV}
    root = str(Path(tree[0][0]).parents[6])
    out = subprocess.run([sys.executable, "-c", code, root, str(tmp_path / "c.duckdb")], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert out == ["aot", str(len(tree[0])), "False"]


@pytest.mark.parametrize("seed", range(3))
def test_compiled_kernels_equal_the_jit_bit_for_bit(seed: int) -> None:
    from exr_inspector.embed import _kernels_aot as aot
    from exr_inspector.embed import numba_kernels as jit

    rows, hashes, weights = _random_triples(seed, 4000, 300)
    for dim in (EMBEDDING_DIM, FINGERPRINT_DIM, 7, 1):
        got = aot.scatter_sorted(rows, hashes, weights, 310, dim)
        assert got.tobytes() == jit.scatter_sorted(rows, hashes, weights, 310, dim).tobytes()
    assert aot.scatter_sorted(rows[:0], hashes[:0], weights[:0], 3, 8).tobytes() == \
        jit.scatter_sorted(rows[:0], hashes[:0], weights[:0], 3, 8).tobytes()
    strings = _random_strings(np.random.default_rng(seed), 400)
    data, offsets = string_buffers(pa.array(strings, pa.large_string()).slice(13))
    assert not data.flags.writeable
    writable = np.frombuffer(bytearray(data.tobytes()), np.uint8)  # either writability is taken
    for d in (data, writable):
        np.testing.assert_array_equal(aot.hash_tokens(d, offsets), jit.hash_tokens(d, offsets))
    np.testing.assert_array_equal(aot.hash_tokens(data, offsets), _xxh(strings[13:]))


def test_kernel_wrappers_coerce_or_refuse_what_the_compiled_code_cannot_check() -> None:
    """The compiled kernels trust their argument types; the public wrappers never pass a wrong one."""
    data = np.frombuffer(b"abcdef", np.uint8)
    np.testing.assert_array_equal(hash_tokens(data, np.array([0, 3, 6], np.int32)), _xxh(["abc", "def"]))
    for bad_data, bad_offsets in ((data, [0, 7]), (data, [4, 2]), (data, [-1, 2]), (data, []),
                                  (data.astype(np.int16), [0, 1]), (data.reshape(2, 3), [0, 1])):
        with pytest.raises(ValueError):
            hash_tokens(bad_data, np.asarray(bad_offsets))
    got = scatter_sorted([0, 0, 1], np.array([5, 9, 2], np.int64), [1, 2, 3], 2, 4)  # any numeric dtypes
    assert got.tobytes() == scatter_sorted(np.array([0, 0, 1]), np.array([5, 9, 2], np.uint64),
                                           np.array([1, 2, 3], np.float32), 2, 4).tobytes()
    with pytest.raises(ValueError):
        scatter_sorted([0, 1], [1], [1.0], 2, 4)


# --------------------------------------------------------------------------- scatter_rows
def _random_triples(seed: int, n: int, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.integers(0, n_rows, n))
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64)
    weights = rng.choice(np.array([0.25, 0.5, 1.0, 0.3], np.float32), n)
    return rows, hashes, weights


@pytest.mark.parametrize("dim", [EMBEDDING_DIM, FINGERPRINT_DIM, 7])
def test_scatter_rows_equals_reference(dim: int) -> None:
    rows, hashes, weights = _random_triples(2, 5000, 300)
    got = scatter_rows(rows, hashes, weights, 310, dim)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (310, dim)
    np.testing.assert_allclose(got, scatter_rows_ref(rows, hashes, weights, 310, dim), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(got.astype(np.float64), axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(scatter_sorted(rows, hashes, weights, 310, dim), got)


def test_scatter_rows_unsorted_rows_keep_token_order() -> None:
    """Rows in any order give the same result as the stably grouped input."""
    rows, hashes, weights = _random_triples(3, 3000, 100)
    perm = np.random.default_rng(4).permutation(rows.size)
    shuffled = scatter_rows(rows[perm], hashes[perm], weights[perm], 100, 64)
    np.testing.assert_allclose(shuffled, scatter_rows_ref(rows, hashes, weights, 100, 64), rtol=1e-6, atol=1e-7)
    grouped = np.argsort(rows[perm], kind="stable")
    np.testing.assert_array_equal(
        shuffled, scatter_rows(rows[perm][grouped], hashes[perm][grouped], weights[perm][grouped], 100, 64)
    )


def test_scatter_rows_degenerate_rows_are_uniform() -> None:
    """No tokens, or tokens that cancel, give 1/sqrt(dim) everywhere (a valid unit vector)."""
    h = np.uint64(12345)
    rows = np.array([1, 1], np.int64)
    out = scatter_rows(rows, np.array([h, h]), np.array([1.0, -1.0], np.float32), 3, 384)
    np.testing.assert_array_equal(out, np.full((3, 384), np.float32(1 / np.sqrt(384))))
    np.testing.assert_allclose(out, scatter_rows_ref(rows, np.array([h, h]), np.array([1.0, -1.0]), 3, 384))
    assert scatter_rows(np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.float32), 0, 8).shape == (0, 8)


def test_scatter_rows_index_and_sign_from_hash() -> None:
    """One token: a single +-1 at h % dim, the sign from bit 63."""
    for h, sign in ((np.uint64(1000), 1.0), (np.uint64(2**63 + 1000), -1.0)):
        out = scatter_rows(np.array([0]), np.array([h]), np.array([0.5], np.float32), 1, 384)
        expected = np.zeros((1, 384), np.float32)
        expected[0, int(h % np.uint64(384))] = sign
        np.testing.assert_array_equal(out, expected)


def test_scatter_rows_checks_arguments() -> None:
    with pytest.raises(ValueError):
        scatter_rows(np.array([5]), np.array([1], np.uint64), np.array([1.0]), 2, 8)
    with pytest.raises(ValueError):
        scatter_rows(np.array([0, 1]), np.array([1], np.uint64), np.array([1.0]), 2, 8)


# --------------------------------------------------------------------------- embed_chunk
def test_embed_chunk_shapes_and_unit_norm(whole: tuple[np.ndarray, np.ndarray], tree) -> None:
    files_v, chans_v = whole
    assert files_v.shape == (len(tree[0]), EMBEDDING_DIM) and files_v.dtype == np.float32
    assert chans_v.shape[1] == FINGERPRINT_DIM and chans_v.dtype == np.float32
    assert files_v.flags.c_contiguous and chans_v.flags.c_contiguous
    for v in whole:
        np.testing.assert_allclose(np.linalg.norm(v.astype(np.float64), axis=1), 1.0, atol=1e-6)


def test_embed_empty_chunk() -> None:
    files_v, chans_v = embed_chunk(scan_chunk([], native=True))
    assert files_v.shape == (0, EMBEDDING_DIM) and chans_v.shape == (0, FINGERPRINT_DIM)


def test_deterministic_and_chunk_free(tree, whole: tuple[np.ndarray, np.ndarray]) -> None:
    """Same input twice -> same bytes; files embedded in pieces -> the same rows as in one chunk."""
    paths = tree[0]
    again = embed_chunk(scan_chunk(paths, native=True))
    assert again[0].tobytes() == whole[0].tobytes() and again[1].tobytes() == whole[1].tobytes()
    pieces = [paths[i::3] for i in range(3)]  # interleaved: every piece has other neighbours
    by_path, chans = {}, {}
    for piece in pieces:
        raw = scan_chunk(piece, native=True)
        fv, cv = embed_chunk(raw)
        by_path.update(zip(raw.files["file_path"].to_pylist(), fv, strict=True))
        names = zip(raw.channels["file_index"].to_pylist(), raw.channels["channel_name"].to_pylist(), strict=True)
        chans.update({(piece[fi], name): v for (fi, name), v in zip(names, cv, strict=True)})
    np.testing.assert_array_equal(np.stack([by_path[p] for p in paths]), whole[0])
    raw = scan_chunk(paths, native=True)
    names = zip(raw.channels["file_index"].to_pylist(), raw.channels["channel_name"].to_pylist(), strict=True)
    np.testing.assert_array_equal(np.stack([chans[(paths[fi], n)] for fi, n in names]), whole[1])


@pytest.mark.parametrize("jit", ["0", "1"])
def test_same_bytes_in_a_subprocess(tree, whole: tuple[np.ndarray, np.ndarray], tmp_path: Path, jit: str) -> None:
    """Another process embeds the same bytes, with the compiled kernels and with numba's JIT."""
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(tree[0]), encoding="utf-8")
    out = tmp_path / "vectors.bin"
    code = (
        "import sys; from exr_inspector.crawl.columns import scan_chunk; from exr_inspector.embed import embed_chunk;"
        "paths = open(sys.argv[1], encoding='utf-8').read().split('\\n');"
        "f, c = embed_chunk(scan_chunk(paths, native=True));"
        "open(sys.argv[2], 'wb').write(f.tobytes() + c.tobytes())"
    )
    subprocess.run([sys.executable, "-c", code, str(listing), str(out)], check=True, timeout=120,
                   env={**os.environ, JIT_ENV: jit})
    assert out.read_bytes() == whole[0].tobytes() + whole[1].tobytes()


def test_native_and_python_scans_embed_alike(tree, whole: tuple[np.ndarray, np.ndarray]) -> None:
    files_v, chans_v = embed_chunk(scan_chunk(tree[0], native=False))
    assert files_v.tobytes() == whole[0].tobytes() and chans_v.tobytes() == whole[1].tobytes()


def test_similar_beats_dissimilar(tree, whole: tuple[np.ndarray, np.ndarray]) -> None:
    """Frames of one template are closer to each other than to any other template's frames."""
    labels = tree[1]
    sim = whole[0].astype(np.float64) @ whole[0].astype(np.float64).T
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(sim, np.nan)
    for i in range(len(labels)):
        assert np.nanmin(np.where(same[i], sim[i], np.nan)) > np.nanmax(np.where(~same[i], sim[i], np.nan))
    assert len(set(labels.tolist())) == 5


def test_per_frame_values_are_not_tokens(tree) -> None:
    """Only presence tokens for per-frame attributes, so all frames of a template share their tokens."""
    paths, labels = tree
    rows, tokens, weights = file_tokens(scan_chunk(paths, native=True))
    text = tokens.to_pylist()
    assert not [t for t in text if t.startswith("attr:") and "=" in t and any(p in t.split("=")[0] for p in PER_FRAME)]
    assert "attr:capDate" in text and weights.dtype == np.float32 and np.all(np.diff(rows) >= 0)
    sets: dict[int, set[frozenset[str]]] = {}
    for r in range(len(paths)):
        sets.setdefault(int(labels[r]), set()).add(frozenset(t for t, ok in zip(text, rows == r, strict=True) if ok))
    assert all(len(s) == 1 for s in sets.values())
    assert len({next(iter(s)) for s in sets.values()}) == len(sets)  # templates differ


def test_channel_fingerprints_follow_the_layout(tree, whole: tuple[np.ndarray, np.ndarray]) -> None:
    """A channel of one AOV layout gets one fingerprint in every frame; different channels differ."""
    raw = scan_chunk(tree[0], native=True)
    rows, tokens, _ = channel_tokens(raw)
    assert np.array_equal(np.unique(rows), np.arange(raw.channels.num_rows))
    labels = tree[1][raw.channels["file_index"].to_numpy()]
    names = raw.channels["channel_name"].to_pylist()
    by_key: dict[tuple[int, int, str], set[bytes]] = {}
    part = raw.channels["part_index"].to_pylist()
    for i, (lab, pi, name) in enumerate(zip(labels, part, names, strict=True)):
        by_key.setdefault((int(lab), pi, name), set()).add(whole[1][i].tobytes())
    assert all(len(v) == 1 for v in by_key.values())
    first = {name: whole[1][i] for i, name in enumerate(names)}
    if "R" in first and "G" in first:
        assert float(first["R"] @ first["G"]) < 0.99


def test_fingerprints_once_per_signature_equal_every_channel_embedded(tree, whole) -> None:
    """embed_channels_distinct (what the readers run) equals embedding every channel row, and the
    batch a reader ships expands to those fingerprints and to the scanner's attribute values."""
    raw = scan_chunk(tree[0], native=True)
    inverse, distinct = embed_channels_distinct(raw)
    assert len(distinct) < raw.channels.num_rows / 4
    assert distinct[inverse].tobytes() == whole[1].tobytes()
    batch = build_batch(raw, dt.datetime(2026, 1, 1), "run")
    shipped = batch.channels["channel_fingerprint"].combine_chunks().flatten().to_numpy().reshape(-1, 128)
    assert shipped.tobytes() == whole[1].tobytes()
    attrs = batch.attributes
    rows = raw.attribute_rows()
    for name in ("attr_name", "attr_type", "value_json", "value_text", "value_int", "value_float"):
        assert attrs[name].combine_chunks().equals(rows[name].combine_chunks()), name
    assert batch.values.num_rows < raw.attributes.num_rows / 2
    assert batch.channel_defs.num_rows == len(distinct) < raw.channels.num_rows / 4
    for name in ("channel_name", "layer_name", "component_name", "channel_type", "x_sampling", "y_sampling",
                 "p_linear"):
        assert batch.channels[name].combine_chunks().equals(raw.channels[name].combine_chunks()), name


def test_embed_distinct_equals_embedding_every_row(tree, whole) -> None:
    """What the readers run (one vector per file signature and per channel signature) is
    bit-identical to embedding every file and channel, on both scanners' output."""
    paths, labels = tree
    for native in (True, False):
        raw = scan_chunk(paths, native=native)
        f_inv, f_vecs, c_inv, c_vecs = embed_distinct(raw)
        assert f_vecs[f_inv].tobytes() == whole[0].tobytes()
        assert c_vecs[c_inv].tobytes() == whole[1].tobytes()
        assert len(f_vecs) <= len(set(labels.tolist())) * 2 < len(paths)  # frames share signatures


def test_file_signatures_split_on_every_token_input(tree) -> None:
    """Change one token-relevant value in one file and it gets a signature of its own."""
    paths, _ = tree
    raw = scan_chunk(paths[:8], native=True)
    first, ch_inv = channel_signatures(raw)
    codes = attribute_codes(raw.attributes["value_index"].to_numpy(), raw.values)
    _, base = file_signatures(raw, ch_inv, codes)
    assert len(set(base.tolist())) < 8
    victim = int(np.flatnonzero(base == base[0])[1])  # a file sharing file 0's signature
    parts = raw.parts
    comp = parts["compression"].to_pylist()
    row = parts["file_index"].to_pylist().index(victim)
    comp[row] = "ZSTD_TEST"
    changed = RawChunk(raw.files, parts.set_column(parts.schema.get_field_index("compression"), "compression",
                                                   pa.array(comp, pa.string())), raw.channels, raw.attributes,
                       raw.values, raw.errors)
    _, after = file_signatures(changed, ch_inv, codes)
    assert after[victim] != after[0] and np.array_equal(np.delete(after, victim) == after[0],
                                                        np.delete(base, victim) == base[0])


def test_file_signatures_do_not_depend_on_how_files_interleave(tree) -> None:
    """Rows of a table grouped file by file (as the scanners emit them) or in any other file
    order, each file's own rows in order: the same signatures."""
    raw = scan_chunk(tree[0][:12], native=True)

    def by_file_descending(t: pa.Table) -> pa.Table:
        f = t["file_index"].to_numpy()
        return t.take(pa.array(np.argsort(-f, kind="stable")))

    moved = RawChunk(raw.files, by_file_descending(raw.parts), by_file_descending(raw.channels),
                     by_file_descending(raw.attributes), raw.values, raw.errors)
    sigs = []
    for r in (raw, moved):
        _, ch_inv = channel_signatures(r)
        codes = attribute_codes(r.attributes["value_index"].to_numpy(), r.values)
        sigs.append(file_signatures(r, ch_inv, codes)[1])
    same = [sig[:, None] == sig[None, :] for sig in sigs]
    assert np.array_equal(same[0], same[1]) and len(set(sigs[0].tolist())) < 12
