"""Crafted headers with known answers, run through both parsers."""

from __future__ import annotations

import os
import struct

import pytest

from exr_inspector import inspect_bytes
from exr_inspector.exr import ExrError, parse_bytes, read_header

from exrbuild import MAGIC, attr, chlist, multipart, part_attrs, required, single_part
from parsers import PARSERS, outcome_bytes, outcome_file, require_native


@pytest.fixture(params=PARSERS)
def parser(request):
    if request.param == "native":
        require_native()
    return request.param


def parse(data: bytes, parser: str, **kw) -> dict:
    return parse_bytes(data, native=parser == "native", **kw)


def error_of(data: bytes, parser: str, **kw) -> ExrError:
    with pytest.raises(ExrError) as info:
        parse(data, parser, **kw)
    return info.value


def attrs_of(header: dict, part: int = 0) -> dict:
    return {a["name"]: a for a in header["parts"][part]}


def test_minimal_single_part(parser):
    h = parse(single_part(), parser)
    assert h["version"] == 2 and h["flags"] == 0
    assert len(h["parts"]) == 1
    a = attrs_of(h)
    assert a["dataWindow"]["value"] == {"min": [0, 0], "max": [3, 2]}
    assert a["compression"]["value"] == "NONE"
    assert [c["name"] for c in a["channels"]["value"]] == ["B", "G", "R"]
    assert a["channels"]["value"][0] == {"name": "B", "type": "HALF", "p_linear": False, "x_sampling": 1, "y_sampling": 1}
    assert h["warnings"] == []
    assert h["header_size"] == len(single_part()) - 8


@pytest.mark.parametrize(
    "data, code, offset",
    [
        (b"", "not_exr", 0),
        (b"\x76\x2f", "not_exr", 0),
        (b"GIF89a" + b"\0" * 20, "not_exr", 0),
        (MAGIC + b"\x02\x00", "truncated", 4),
        (MAGIC + struct.pack("<I", 1), "unsupported_version", 4),
        (MAGIC + struct.pack("<I", 2 | 0x4000), "unsupported_version", 4),
        (MAGIC + struct.pack("<I", 2 | 0x200 | 0x1000), "unsupported_version", 4),
        (MAGIC + struct.pack("<I", 2), "truncated", 8),
        (MAGIC + struct.pack("<I", 2) + b"x" * 300, "bad_attribute", 8),
        (MAGIC + struct.pack("<I", 2) + b"a\0" + b"t" * 300, "bad_attribute", 10),
        (MAGIC + struct.pack("<I", 2) + b"a\0\0" + b"\0" * 8, "bad_attribute", 10),
        (MAGIC + struct.pack("<I", 2) + b"a\0int\0\x01\x00", "truncated", 14),
        (MAGIC + struct.pack("<I", 2) + attr("a", "int", b"", size=-4), "bad_attribute", 14),
        (MAGIC + struct.pack("<I", 2) + attr("a", "int", b"\0\0", size=4), "truncated", 14),
    ],
)
def test_typed_errors(parser, data, code, offset):
    e = error_of(data, parser)
    assert (e.code, e.offset) == (code, offset)
    assert f"at byte {offset}" in str(e)


def test_error_message_names_attribute(parser):
    data = MAGIC + struct.pack("<I", 2) + attr("dataWindow", "box2i", b"", size=123456)
    e = error_of(data, parser)
    assert e.code == "truncated"
    assert e.message == "attribute 'dataWindow', type 'box2i': size 123456 runs past the end of the file (29 bytes)"


def test_item_budget(parser):
    many = [attr(f"a{i}", "int", struct.pack("<i", i)) for i in range(50)]
    data = single_part(many)
    assert len(parse(data, parser)["parts"][0]) == 58
    e = error_of(data, parser, max_items=40)
    assert e.code == "header_too_large"
    assert "more than 40 attributes" in e.message
    vec = single_part([attr("fv", "floatvector", struct.pack("<100f", *range(100)))])
    assert error_of(vec, parser, max_items=50).code == "header_too_large"


def test_every_fixed_type(parser):
    extra = [
        attr("b2f", "box2f", struct.pack("<4f", 0.5, 1, 2, 3)),
        attr("chroma", "chromaticities", struct.pack("<8f", 0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329)),
        attr("dis", "deepImageState", b"\3"),
        attr("dbl", "double", struct.pack("<d", 2.25)),
        attr("env", "envmap", b"\1"),
        attr("kc", "keycode", struct.pack("<7i", 1, 2, 3, 4, 5, 6, 7)),
        attr("m3", "m33f", struct.pack("<9f", *range(9))),
        attr("m3d", "m33d", struct.pack("<9d", *range(9))),
        attr("m4", "m44f", struct.pack("<16f", *range(16))),
        attr("m4d", "m44d", struct.pack("<16d", *range(16))),
        attr("fps", "rational", struct.pack("<iI", 48, 2)),
        attr("tiles", "tiledesc", struct.pack("<IIB", 64, 32, 2 + 16)),
        attr("tc", "timecode", struct.pack("<II", 0x12345678, 9)),
        attr("v2i", "v2i", struct.pack("<2i", -1, 2)),
        attr("v2d", "v2d", struct.pack("<2d", 1.5, 2.5)),
        attr("v3i", "v3i", struct.pack("<3i", 1, 2, 3)),
        attr("v3f", "v3f", struct.pack("<3f", 1, 2, 3)),
        attr("v3d", "v3d", struct.pack("<3d", 1, 2, 3)),
        attr("comp13", "compression", b"\x0d"),
        attr("comp99", "compression", b"\x63"),
    ]
    a = attrs_of(parse(single_part(extra), parser))
    assert a["b2f"]["value"] == {"min": [0.5, 1.0], "max": [2.0, 3.0]}
    assert a["chroma"]["value"]["white"] == [struct.unpack("<f", struct.pack("<f", 0.3127))[0],
                                             struct.unpack("<f", struct.pack("<f", 0.329))[0]]
    assert a["dis"]["value"] == "TIDY"
    assert a["dbl"]["value"] == 2.25
    assert a["env"]["value"] == "CUBE"
    assert a["kc"]["value"]["perfs_per_count"] == 7 and a["kc"]["value"]["film_mfc_code"] == 1
    assert a["m3"]["value"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert a["m4d"]["value"][3] == [12, 13, 14, 15]
    assert a["fps"]["value"] == [48, 2]  # raw, not reduced
    assert a["tiles"]["value"] == {"x_size": 64, "y_size": 32, "level_mode": "RIPMAP", "rounding_mode": "UP"}
    assert a["tc"]["value"] == {"time_and_flags": 0x12345678, "user_data": 9}
    assert a["v2i"]["value"] == [-1, 2]
    assert a["v3d"]["value"] == [1.0, 2.0, 3.0]
    assert a["comp13"]["value"] == "ZSTD"
    assert a["comp99"]["value"] == "UNKNOWN_99"


def test_variable_types_and_oddities(parser):
    extra = [
        attr("s_bad", "string", b"caf\xe9"),
        attr("s_empty", "string", b""),
        attr("sv", "stringvector", struct.pack("<i", 2) + b"ab" + struct.pack("<i", 0) + struct.pack("<i", 1) + b"\xff"),
        attr("sv_broken", "stringvector", struct.pack("<i", 99) + b"ab"),
        attr("fv_empty", "floatvector", b""),
        attr("fv_bad", "floatvector", b"\0" * 6),
        attr("prev", "preview", struct.pack("<II", 2, 1) + b"\0" * 8),
        attr("prev_bad", "preview", struct.pack("<II", 100, 100) + b"\0" * 8),
        attr("by", "bytes", struct.pack("<I", 4) + b"mime" + b"\x00\x01\x02"),
        attr("by_bad", "bytes", struct.pack("<I", 400) + b"x"),
        attr("int8", "int", b"\0" * 8),
        attr("rat0", "rational", struct.pack("<iI", 24, 0)),
        attr("blob", "acme_blob_v1", b"\x01\x02\x03"),
        attr("caf\xe9".encode("latin-1"), "string", b"x"),
    ]
    h = parse(single_part(extra), parser)
    a = attrs_of(h)
    assert a["s_bad"]["value"] == {"base64": "Y2Fm6Q=="}
    assert a["s_empty"]["value"] == ""
    assert a["sv"]["value"] == ["ab", "", {"base64": "/w=="}]
    assert a["sv_broken"]["value"] == []
    assert a["fv_empty"]["value"] == []
    assert "fv_bad" not in a and "int8" not in a  # dropped, as non-strict OpenEXRCore does
    assert a["prev"]["value"] == {"width": 2, "height": 1}
    assert a["prev_bad"]["value"] == {"width": 100, "height": 100}
    assert a["by"]["value"] == {"type": "bytes", "type_hint": "mime", "base64": "AAEC"}
    assert a["by_bad"]["value"] == {"type": "bytes", "base64": "kAEAAHg="}
    assert a["rat0"]["value"] == [24, 0]
    assert a["blob"]["value"] == {"type": "acme_blob_v1", "base64": "AQID"}
    assert "caf\\xe9" in a
    codes = [w["code"] for w in h["warnings"]]
    for code in ("non_utf8_string", "bad_stringvector", "bad_attribute_size", "bad_preview", "bad_bytes",
                 "non_utf8_name"):
        assert code in codes, code
    assert all(isinstance(w["offset"], int) and w["part_index"] == 0 for w in h["warnings"])


def test_bad_chlists(parser):
    unterminated = b"R\0" + struct.pack("<iB3xii", 1, 0, 1, 1)
    truncated = b"R\0" + b"\1\0\0"
    trailing = chlist(("R", 2)) + b"junk"
    for raw, expect in ((unterminated, ["R"]), (truncated, []), (trailing, ["R"])):
        base = [attr("channels", "chlist", raw)] + required()[1:]
        h = parse(single_part(base=base), parser)
        assert [c["name"] for c in attrs_of(h)["channels"]["value"]] == expect
        assert [w["code"] for w in h["warnings"]] == ["bad_chlist"]


def test_multipart_and_views(parser):
    data = multipart([part_attrs("left.rgba", view="left"), part_attrs("right.rgba", "tiledimage", view="right")])
    h = parse(data, parser)
    assert len(h["parts"]) == 2
    assert attrs_of(h, 1)["view"]["value"] == "right"
    p = inspect_bytes(data, native=parser == "native")
    assert [x["type"] for x in p["parts"]] == ["scanlineimage", "tiledimage"]
    assert p["file"]["is_tiled"] and p["file"]["multipart_count"] == 2
    assert "missing_required" in [w["code"] for w in p["warnings"]]  # part 1 is tiled but has no `tiles`


def test_empty_multipart_declares_no_parts(parser):
    h = parse(MAGIC + struct.pack("<I", 2 | 0x1000) + b"\0", parser)
    assert h["parts"] == []


def test_payload_channels_and_frame(parser):
    base = [attr("channels", "chlist", chlist(("A", 1), ("diffuse.B", 2), ("diffuse.R", 2), ("crypto.id.R", 0)))]
    data = single_part(base=base + required()[1:])
    p = inspect_bytes(data, path="/shots/beauty.1001.exr", native=parser == "native")
    assert p["schema_version"] == 1
    assert p["file"]["frame_number"] == 1001 and p["file"]["size_bytes"] == len(data)
    ch = {c["name"]: c for c in p["channels"]}
    assert (ch["A"]["layer"], ch["A"]["component"], ch["A"]["type"]) == ("", "A", "HALF")
    assert (ch["diffuse.R"]["layer"], ch["diffuse.R"]["component"], ch["diffuse.R"]["type"]) == ("diffuse", "R", "FLOAT")
    assert (ch["crypto.id.R"]["layer"], ch["crypto.id.R"]["type"]) == ("crypto.id", "UINT")
    assert set(p["file"]) >= {"path", "size_bytes", "mtime", "multipart_count", "is_deep", "is_tiled", "frame_number"}


def test_validation_warnings(parser):
    dup = single_part([attr("owner", "string", b"a"), attr("owner", "string", b"b"),
                       attr("x" * 40, "string", b"v"), attr("fps", "rational", struct.pack("<iI", 1, 0))])
    p = inspect_bytes(dup, native=parser == "native")
    codes = [w["code"] for w in p["warnings"]]
    assert {"duplicate_attribute", "long_name", "rational_zero_denominator"} <= set(codes)
    owners = [a["value"] for a in p["parts"][0]["attributes"] if a["name"] == "owner"]
    assert owners == ["a", "b"]  # both kept, in file order
    clean = inspect_bytes(single_part([attr("x" * 40, "string", b"v")], flags=0x400), native=parser == "native")
    assert clean["warnings"] == []


def write(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_file_header_larger_than_first_read(parser, tmp_path):
    big = single_part([attr("blob", "acme", os.urandom(300_000)), attr("after", "string", b"still here")])
    p = write(tmp_path, "big.exr", big + b"\0" * 1000)
    fh = read_header(p, native=parser == "native")
    assert attrs_of(fh.header)["after"]["value"] == "still here"
    assert fh.size_bytes == len(big) + 1000
    e = pytest.raises(ExrError, read_header, p, native=parser == "native", max_header_bytes=100_000).value
    assert e.code == "header_too_large" and e.path == str(p)


def test_file_errors(parser, tmp_path):
    missing = tmp_path / "gone.exr"
    e = pytest.raises(ExrError, read_header, missing, native=parser == "native").value
    assert e.code == "io_error" and "No such file" in e.message and str(missing) in str(e)
    e = pytest.raises(ExrError, read_header, tmp_path, native=parser == "native").value
    assert e.code == "io_error"
    trunc = write(tmp_path, "t.exr", single_part()[:60])
    e = pytest.raises(ExrError, read_header, trunc, native=parser == "native").value
    assert e.code == "truncated" and str(trunc) in str(e)


def test_file_and_bytes_paths_agree(tmp_path):
    require_native()
    data = single_part([attr("blob", "acme", b"\7" * 70_000)])
    for cut in (len(data), 70_050, 65_536, 65_537, 100, 9):
        p = write(tmp_path, f"c{cut}.exr", data[:cut])
        assert outcome_file(p, "python") == outcome_file(p, "native")
        assert outcome_bytes(data[:cut], "python") == outcome_bytes(data[:cut], "native")


def test_unreadable_file(parser, tmp_path):
    """A permission error is an io_error. Root reads anything, so a root run drops the
    capabilities that bypass file modes (setpriv) in a child process."""
    import shutil
    import subprocess
    import sys

    p = write(tmp_path, "locked.exr", single_part())
    p.chmod(0)
    code = (
        "import sys; from exr_inspector.exr import ExrError, read_header\n"
        "try: read_header(sys.argv[1], native=sys.argv[2] == 'native')\n"
        "except ExrError as e: print(e.code, e.message)\n"
    )
    cmd = [sys.executable, "-c", code, str(p), parser]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "io_error cannot open file: Permission denied"


def test_multipart_names_that_are_not_utf8(parser):
    """Found by fuzzing: a part name kept as {"base64": ...} must not break validation."""
    a = part_attrs("x")
    b = part_attrs("y")
    a[-3] = attr("name", "string", b"\x80art0")
    b[-3] = attr("name", "string", b"\x80art0")
    p = inspect_bytes(multipart([a, b]), native=parser == "native")
    assert p["parts"][0]["name"] is None or isinstance(p["parts"][0]["name"], dict)
    assert "duplicate_part_name" in [w["code"] for w in p["warnings"]]
