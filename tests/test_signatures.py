"""The C scanner's signatures: equal signature bytes must mean equal embedding tokens (so a
reader may embed a signature once and keep its vector across chunks), and the frames of a
sequence must share one."""

from __future__ import annotations

import csv
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from exr_inspector.crawl.columns import RawChunk, scan_chunk
from exr_inspector.embed import SIGNATURE_NAMES, VectorCache, embed_chunk, embed_distinct
from exr_inspector.embed.features import channel_tokens, file_tokens
from exr_inspector.exr import native_available

from conftest import corpus_root, valid_rows
from exrbuild import attr, box2i, chlist, multipart, part_attrs, required, single_part

pytestmark = pytest.mark.skipif(not native_available(), reason="signatures come from the C scanner")

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from gen_tree import generate  # noqa: E402


def _string(name: str, text: str) -> bytes:
    return attr(name, "string", text.encode())


def _bgr_with_r(plinear: int, sampling: int) -> bytes:
    """The base's chlist (B, G, R; HALF) with R's pLinear and sampling set."""
    entry = struct.Struct("<iB3xii")
    value = (b"B\0" + entry.pack(1, 0, 1, 1) + b"G\0" + entry.pack(1, 0, 1, 1)
             + b"R\0" + entry.pack(1, plinear, sampling, sampling) + b"\0")
    return attr("channels", "chlist", value)


def _variants() -> dict[str, bytes]:
    """A base header, headers that change one token input each, and headers that change only
    what makes no token (per-frame values), so must share the base's signature."""
    base = required() + [_string("owner", "ana"), _string("software", "Arnold 7.1"),
                         attr("capDate", "string", b"2026:01:01 10:00:00"), attr("framesPerSecond", "rational",
                                                                                   struct.pack("<iI", 24, 1))]

    def swap(i: int, new: bytes) -> list[bytes]:
        return base[:i] + [new] + base[i + 1:]

    return {
        "base": single_part(base=base),
        "frame: capDate": single_part(base=base[:10] + [attr("capDate", "string", b"2026:01:02 11:00:00")]
                                      + base[11:]),
        "frame: dataWindow": single_part(base=swap(2, attr("dataWindow", "box2i", box2i(1, 0, 3, 2)))),
        "compression": single_part(base=swap(1, attr("compression", "compression", bytes([3])))),
        "channel type": single_part(base=swap(0, attr("channels", "chlist", chlist(("B", 1), ("G", 2), ("R", 1))))),
        "channel name": single_part(base=swap(0, attr("channels", "chlist", chlist(("B", 1), ("G", 1), ("Z", 1))))),
        "channel sampling": single_part(base=swap(0, _bgr_with_r(plinear=0, sampling=2))),
        "plinear": single_part(base=swap(0, _bgr_with_r(plinear=1, sampling=1))),
        "displayWindow": single_part(base=swap(3, attr("displayWindow", "box2i", box2i(0, 0, 7, 2)))),
        "lineOrder": single_part(base=swap(4, attr("lineOrder", "lineOrder", b"\1"))),
        "owner": single_part(base=swap(8, _string("owner", "bo"))),
        "software family": single_part(base=swap(9, _string("software", "RenderMan 26"))),
        "framesPerSecond": single_part(base=swap(11, attr("framesPerSecond", "rational", struct.pack("<iI", 25, 1)))),
        "one more attribute": single_part(base=base + [_string("comments", "x")]),
        "dropped attribute": single_part(base=base + [attr("screenWindowWidth2", "float", b"\0\0")]),
        "dropped attribute, other name": single_part(base=base + [attr("screenWindowWidth3", "float", b"\0\0")]),
        "view": single_part(base=base + [_string("view", "left")]),
        "tiled": single_part(base=base + [attr("tiles", "tiledesc", struct.pack("<IIB", 16, 16, 0))], flags=0x200),
        "tile size": single_part(base=base + [attr("tiles", "tiledesc", struct.pack("<IIB", 32, 16, 0))], flags=0x200),
        "two parts": multipart([part_attrs("a"), part_attrs("b")]),
        "two parts, a view": multipart([part_attrs("a"), part_attrs("b", view="right")]),
        "two parts, deep": multipart([part_attrs("a"), part_attrs("b", "deepscanline")]),
    }


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    root = tmp_path_factory.mktemp("signatures")
    names, paths = [], []
    for i, (name, data) in enumerate(_variants().items()):
        p = root / f"v{i:02d}.exr"
        p.write_bytes(data)
        names.append(name)
        paths.append(str(p))
    return names, paths


def _grouped(rows: np.ndarray, tokens, weights: np.ndarray, n: int) -> list[tuple]:
    out: list[list] = [[] for _ in range(n)]
    for r, t, w in zip(rows.tolist(), tokens.to_pylist(), weights.tolist(), strict=True):
        out[r].append((t, w))
    return [tuple(x) for x in out]


def assert_sound(raw: RawChunk) -> tuple[int, int]:
    """Equal signature => equal tokens, for files and for channels; returns the signature counts."""
    sig = raw.signatures
    assert sig is not None and sig.names == SIGNATURE_NAMES
    files = _grouped(*file_tokens(raw), raw.files.num_rows)
    chans = _grouped(*channel_tokens(raw), raw.channels.num_rows)
    for ids, toks in ((sig.files, files), (sig.channels, chans)):
        seen: dict[int, tuple] = {}
        for s, t in zip(ids.tolist(), toks, strict=True):
            assert seen.setdefault(s, t) == t, f"signature {s} holds two token lists"
    return len(sig.file_keys), len(sig.channel_keys)


def test_one_token_input_changed_is_a_new_signature_and_frames_share_one(variants) -> None:
    names, paths = variants
    raw = scan_chunk(paths, native=True, signature_names=SIGNATURE_NAMES)
    assert raw.errors.num_rows == 0, raw.errors.to_pylist()
    assert_sound(raw)
    sig = raw.signatures.files.tolist()
    tokens = _grouped(*file_tokens(raw), raw.files.num_rows)
    by_name = dict(zip(names, zip(sig, tokens, strict=True), strict=True))
    base_sig, base_tokens = by_name.pop("base")
    for name, (s, t) in by_name.items():
        if name.startswith("frame: "):
            assert t == base_tokens and s == base_sig, name
        else:
            assert s != base_sig, name
    # Finer than the tokens only where a value is kept whole: the chlist (pLinear is no file
    # token) and a dropped attribute (no row, no token); the rest split exactly as the tokens do.
    same_tokens = [n for n, (s, t) in by_name.items() if t == base_tokens and s != base_sig]
    assert sorted(same_tokens) == ["dropped attribute", "dropped attribute, other name", "plinear"]
    assert len(set(sig)) == len(set(tokens)) + len(same_tokens)


def test_signatures_do_not_depend_on_the_chunk(variants) -> None:
    """A file's signature bytes are the same whichever files share its chunk: a vector kept
    from one chunk is right for the next."""
    _, paths = variants
    whole = scan_chunk(paths, native=True, signature_names=SIGNATURE_NAMES).signatures
    alone = scan_chunk(paths[::-1][:7], native=True, signature_names=SIGNATURE_NAMES).signatures
    keys = whole.file_keys.to_pylist()
    for i, p in enumerate(paths[::-1][:7]):
        assert alone.file_keys[int(alone.files[i])].as_py() == keys[int(whole.files[paths.index(p)])]
    assert set(alone.channel_keys.to_pylist()) <= set(whole.channel_keys.to_pylist())


def test_signatures_sound_on_generated_tree_and_corpus(tmp_path: Path) -> None:
    manifest = generate(tmp_path, 120, templates=12, seed=5)
    rows = sorted(csv.DictReader(manifest.open(encoding="utf-8"), delimiter="\t"), key=lambda r: r["relpath"])
    raw = scan_chunk([str(tmp_path / r["relpath"]) for r in rows], native=True, signature_names=SIGNATURE_NAMES)
    n_files, n_channels = assert_sound(raw)
    assert n_files < raw.files.num_rows / 3 and n_channels < raw.channels.num_rows / 4  # frames share
    root = corpus_root()
    if root is None:
        pytest.skip("EXR corpus not found: the generated tree was checked")
    corpus = scan_chunk([str(root / r["path"]) for r in valid_rows()], native=True, signature_names=SIGNATURE_NAMES)
    assert corpus.files.num_rows > 0
    assert_sound(corpus)


def test_cached_vectors_across_chunks_equal_embedding_every_row(tmp_path: Path) -> None:
    """What a reader runs (native signatures, vectors kept across its chunks, the cache also
    emptied when full) is bit-identical to embedding every file and channel of each chunk."""
    manifest = generate(tmp_path, 96, templates=6, seed=11)
    paths = sorted(str(tmp_path / r["relpath"]) for r in csv.DictReader(manifest.open(encoding="utf-8"),
                                                                          delimiter="\t"))
    for cache in (VectorCache(), VectorCache(max_bytes=8 << 10)):
        for lo in range(0, len(paths), 5):  # a sequence spans chunks
            raw = scan_chunk(paths[lo:lo + 5], native=True, signature_names=SIGNATURE_NAMES)
            f_inv, f_vecs, c_inv, c_vecs = embed_distinct(raw, cache)
            files, channels = embed_chunk(raw)
            assert f_vecs[f_inv].tobytes() == files.tobytes()
            assert c_vecs[c_inv].tobytes() == channels.tobytes()
        assert cache.misses > 0
        if cache.max_bytes > 1 << 20:
            assert cache.hits > cache.misses  # later chunks reuse the first chunks' vectors
