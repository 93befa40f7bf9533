"""The `exr-inspector` command, run as a user runs it: the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exrbuild import attr, single_part

EXE = shutil.which("exr-inspector", path=str(Path(sys.executable).parent))


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    assert EXE, "console script exr-inspector not installed in the venv"
    return subprocess.run([EXE, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "beauty.1001.exr"
    good.write_bytes(single_part([attr("owner", "string", b"mchen")]))
    bad = tmp_path / "broken.exr"
    bad.write_bytes(b"\x76\x2f\x31\x01\x02\x00\x00\x00channels\0chlist\0\xff\xff\x00\x00")
    return good, bad


def test_json_lines_and_exit_codes(files):
    good, bad = files
    proc = cli("inspect", "--json", str(good), str(bad), str(good))
    assert proc.returncode == 1
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(lines) == 3
    assert lines[0]["schema_version"] == 1 and lines[0]["file"]["frame_number"] == 1001
    assert list(lines[0]) == sorted(lines[0])  # sorted keys
    assert lines[1]["path"] == str(bad)
    assert lines[1]["error"]["code"] == "truncated" and lines[1]["error"]["offset"] == 24
    assert lines[2] == lines[0]
    assert "error [truncated]" in proc.stderr and str(bad) in proc.stderr


def test_text_output(files):
    good, _ = files
    proc = cli("inspect", str(good))
    assert proc.returncode == 0
    assert "part 0  scanlineimage" in proc.stdout
    assert "owner" in proc.stdout and "'mchen'" in proc.stdout
    assert "(default)" in proc.stdout and "B G R" in proc.stdout


def test_python_path_gives_same_json(files):
    good, _ = files
    native = cli("inspect", "--json", str(good))
    python = cli("inspect", "--json", str(good), env={"EXR_INSPECTOR_NATIVE": "0"})
    assert native.stdout == python.stdout and native.returncode == python.returncode == 0


def test_usage_errors():
    assert cli().returncode == 2
    assert cli("inspect").returncode == 2
    assert cli("nonsense").returncode == 2
    help_text = cli("inspect", "--help")
    assert help_text.returncode == 0 and "examples:" in help_text.stdout


def test_missing_file_is_io_error(tmp_path):
    proc = cli("inspect", "--json", str(tmp_path / "nope.exr"))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["code"] == "io_error"


def test_fallback_when_extension_missing(tmp_path, files):
    """With the native module unimportable the package still works, on the Python path, and warns."""
    good, _ = files
    shadow = tmp_path / "shadow" / "exr_inspector"
    shadow.mkdir(parents=True)
    src = Path(__import__("exr_inspector").__file__).parent
    shutil.copytree(src, shadow, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    code = (
        "import warnings, json, exr_inspector\n"
        "from exr_inspector.exr import native_available\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    p = exr_inspector.inspect({str(good)!r})\n"
        "print(json.dumps([native_available(), p['file']['multipart_count'], [str(x.message) for x in w]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(shadow.parent)}, check=True)
    available, nparts, warned = json.loads(proc.stdout)
    assert available is False and nparts == 1
    assert any("native extension unavailable" in m for m in warned)


@pytest.mark.parametrize(("setting", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_arrow_allocator_returns_memory_unless_the_user_chose(setting, expected):
    """The command sets pyarrow's pool to the C library's allocator before pyarrow loads (it
    returns freed chunk memory; mimalloc kept ~25 MB more at peak); a user's choice wins."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if setting:
        env["ARROW_DEFAULT_MEMORY_POOL"] = setting
    code = "import exr_inspector.cli, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [expected]
