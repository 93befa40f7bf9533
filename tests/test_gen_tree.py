"""Tests of bench/gen_tree.py, the sample-tree generator behind `make demo` and the benchmarks."""

from __future__ import annotations

import csv
import importlib.util
import re
import struct
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import OpenEXR
import pytest

GEN_TREE = Path(__file__).resolve().parents[1] / "bench" / "gen_tree.py"
LAYOUT = re.compile(
    r"^(?P<show>[a-z0-9_]+)/(?P<seq>[A-Z0-9]{3}_\d{3})/(?P=seq)_\d{4}/render/"
    r"(?P<layer>[a-z_]+)/v(?P<v>\d{3})/(?P=layer)_v(?P=v)\.(?P<frame>\d{4})\.exr$"
)


def _load() -> ModuleType:
    # bench/ is not a package; register under a plain name so worker processes
    # (fork) resolve pickled function references.
    if "gen_tree" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gen_tree", GEN_TREE)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["gen_tree"] = module
        spec.loader.exec_module(module)
    return sys.modules["gen_tree"]


gen_tree = _load()


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def offset_tables(data: bytes) -> tuple[int, list[list[int]]]:
    """(end of the offset tables, every part's chunk offsets), from the bytes."""
    multipart = struct.unpack_from("<I", data, 4)[0] & 0x1000
    pos, counts = 8, []
    while True:
        count = None
        while data[pos]:
            name_end = data.index(b"\0", pos)
            type_end = data.index(b"\0", name_end + 1)
            (size,) = struct.unpack_from("<i", data, type_end + 1)
            if data[pos:name_end] == b"chunkCount":
                (count,) = struct.unpack_from("<i", data, type_end + 5)
            pos = type_end + 5 + size
        counts.append(count)
        pos += 1
        if not multipart or data[pos] == 0:
            pos += 1 if multipart else 0
            break
    tables = []
    for count in counts:
        if count is None:  # single part: the table ends where the first chunk starts
            count, first = 0, len(data)
            while pos + 8 * count < first:
                first = min(first, struct.unpack_from("<Q", data, pos + 8 * count)[0])
                count += 1
        tables.append(list(struct.unpack_from(f"<{count}Q", data, pos)))
        pos += 8 * count
    return pos, tables


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tree")
    gen_tree.generate(out, 60, templates=12, seed=11, damaged=3)
    return out


def test_manifest_rows(tree: Path) -> None:
    rows = read_manifest(tree / "manifest.tsv")
    assert list(rows[0]) == ["relpath", "template_id", "show", "layer", "frame", "damaged"]
    assert len(rows) == 63
    assert sum(r["damaged"] == "1" for r in rows) == 3
    on_disk = {p.relative_to(tree).as_posix() for p in tree.rglob("*.exr")}
    assert on_disk == {r["relpath"] for r in rows}


def test_layout_and_sequences(tree: Path) -> None:
    frames: dict[str, list[int]] = defaultdict(list)
    for row in read_manifest(tree / "manifest.tsv"):
        m = LAYOUT.match(row["relpath"])
        assert m, row["relpath"]
        assert (m["show"], m["layer"], int(m["frame"])) == (row["show"], row["layer"], int(row["frame"]))
        frames[row["relpath"].rsplit(".", 2)[0]].append(int(row["frame"]))
    assert len(frames) == 12
    for seq, numbers in frames.items():  # damaged frames continue the sequence
        numbers.sort()
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), seq


def test_valid_files_read_and_damaged_do_not(tree: Path) -> None:
    for row in read_manifest(tree / "manifest.tsv"):
        path = tree / row["relpath"]
        if row["damaged"] == "1":
            with pytest.raises(Exception):  # noqa: B017 - any OpenEXR error will do
                OpenEXR.File(str(path), header_only=True)
            continue
        f = OpenEXR.File(str(path), header_only=True)
        header = f.parts[0].header
        assert header["renderLayer"] == row["layer"] and header["show"] == row["show"]
        # Every chunk is present (the binding leaves MIPMAP levels > 0 unwritten;
        # the generator completes them).
        data = path.read_bytes()
        end, tables = offset_tables(data)
        assert len(tables) == len(f.parts)
        assert all(end <= o < len(data) for table in tables for o in table), row["relpath"]
        full = OpenEXR.File(str(path), separate_channels=True)
        assert len(full.parts) == len(f.parts), row["relpath"]


def test_same_seed_same_bytes(tree: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    gen_tree.generate(again, 60, templates=12, seed=11, damaged=3, jobs=2)  # also covers the pool
    first = sorted(p.relative_to(tree) for p in tree.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    for rel in first:
        assert (tree / rel).read_bytes() == (again / rel).read_bytes(), rel

    other = tmp_path / "other"
    gen_tree.generate(other, 60, templates=12, seed=12, damaged=3)
    assert (other / "manifest.tsv").read_bytes() != (tree / "manifest.tsv").read_bytes()


def test_patched_frames_match_binding_output() -> None:
    """The fast path (patch the first frame) must equal a full binding write."""
    for t in gen_tree.make_templates(40, seed=5):
        for frame in (t.first_frame, t.first_frame + 1, t.first_frame + 13):
            assert gen_tree.render_file(t, frame) == gen_tree.render_file(t, frame, fast=False), (
                t.template_id,
                frame,
            )


def test_templates_are_varied() -> None:
    templates = gen_tree.make_templates(120, seed=0)
    parts = [p for t in templates for p in t.parts]
    assert len({p.compression for p in parts}) >= 8
    assert {p.tiles[2] for p in parts if p.tiles} == {"ONE_LEVEL", "MIPMAP"}
    assert any(len(t.parts) > 1 for t in templates)
    assert any(p.view == "right" for p in parts)
    assert {pt for p in parts for _, pt in p.channels} == {"HALF", "FLOAT", "UINT"}
    assert len({t.display for t in templates}) >= 3
    assert len({dict(t.attrs)["software"] for t in templates}) >= 3
    assert len({(t.show, t.seq, t.shot, t.layer, t.version) for t in templates}) == 120


def test_cli_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_tree.main([str(tmp_path), "--files", "5", "--templates", "2", "--damaged", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "files/s" in out[0]
    assert len(read_manifest(tmp_path / "manifest.tsv")) == 6
