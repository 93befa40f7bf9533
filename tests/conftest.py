"""Shared test plumbing: where the EXR corpus lives and what its manifest says.

The corpus sits outside the repo (``../shared/corpus``) so CI clones and
developer checkouts find it at the same relative place; ``EXR_INSPECTOR_CORPUS``
overrides it. Tests that need it skip cleanly when it is absent.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# Make helper modules (openexr_ref, conftest helpers) importable under any
# pytest import mode.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

CORPUS_ENV = "EXR_INSPECTOR_CORPUS"
_DAMAGED_PREFIXES = ("DAMAGED", "INVALID", "INCOMPLETE", "TRUNCATED")
_EDGE_PREFIX = "EDGE"


def corpus_root() -> Path | None:
    """The corpus directory (env override first), or None when it is absent."""
    override = os.environ.get(CORPUS_ENV)
    default = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
    root = Path(override) if override else default
    return root if (root / "MANIFEST.tsv").is_file() else None


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """Corpus directory; skips the test when the corpus is not available."""
    root = corpus_root()
    if root is None:
        pytest.skip(f"EXR corpus not found (set {CORPUS_ENV})")
    return root


@cache
def _rows() -> tuple[dict, ...]:
    root = corpus_root()
    if root is None:
        return ()
    # split("\n"), not splitlines(): descriptions may hold \x1c-style separators.
    lines = (root / "MANIFEST.tsv").read_text(encoding="utf-8").split("\n")
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        row = dict(zip(header, line.split("\t", len(header) - 1), strict=False))
        row["bytes"] = int(row["bytes"])
        rows.append(row)
    return tuple(rows)


def manifest_rows() -> list[dict]:
    """MANIFEST.tsv as dicts: path, bytes (int), sha256, source_repo, what_it_exercises.

    Empty when the corpus is absent, so it is safe in ``parametrize``.
    """
    return [dict(r) for r in _rows()]


def _kind(row: dict) -> str:
    what = row["what_it_exercises"]
    if what.startswith(_DAMAGED_PREFIXES):
        return "damaged"
    if what.startswith(_EDGE_PREFIX):
        return "edge"
    return "valid"


def valid_rows() -> list[dict]:
    """Files OpenEXR reads: their headers must match OpenEXR exactly."""
    return [r for r in manifest_rows() if _kind(r) == "valid"]


def damaged_rows() -> list[dict]:
    """DAMAGED / INVALID / INCOMPLETE / TRUNCATED files: clear error, never a crash."""
    return [r for r in manifest_rows() if _kind(r) == "damaged"]


def edge_rows() -> list[dict]:
    """Crafted header edge cases (synthetic/edge), each with its own expectation."""
    return [r for r in manifest_rows() if _kind(r) == "edge"]


# -- the loopback VAST server, shared by every test module that needs one --------------

VAST_BUCKET = "exr-data"
VAST_ACCESS = "AKIAEXRINSPECTORTEST"
VAST_SECRET = "s3cr3t-Exr-Inspector-Key-0123456789"


@pytest.fixture(scope="session")
def vast_server():
    """A loopback VAST server (tests/vastloop) with one Database bucket, for the real SDK."""
    from vastloop.server import LoopbackVast

    with LoopbackVast(buckets=[VAST_BUCKET], access_key=VAST_ACCESS, secret_key=VAST_SECRET) as srv:
        yield srv
