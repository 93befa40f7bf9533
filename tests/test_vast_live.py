"""The catalog contract against a real VAST cluster. Opt-in: runs only with ``-m live_vast`` and
VAST_DB_ENDPOINT, VAST_DB_ACCESS_KEY, VAST_DB_SECRET_KEY and VAST_DB_BUCKET set (a
Database-enabled bucket the keys may write). Each test uses its own schema, dropped afterwards.

    VAST_DB_ENDPOINT=https://vip.example VAST_DB_ACCESS_KEY=... VAST_DB_SECRET_KEY=... \\
    VAST_DB_BUCKET=exr-test .venv/bin/python -m pytest -m live_vast tests/test_vast_live.py
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pyarrow as pa
import pytest

from catalog_contract import ROW_KEYS, CatalogContract

NEEDED = ("VAST_DB_ENDPOINT", "VAST_DB_ACCESS_KEY", "VAST_DB_SECRET_KEY", "VAST_DB_BUCKET")
pytestmark = [
    pytest.mark.live_vast,
    pytest.mark.skipif(not all(os.environ.get(k) for k in NEEDED),
                       reason="live VAST tests need " + ", ".join(NEEDED)),
]


def _drop(cat) -> None:
    """Remove the test schema and its tables (best effort: a failed test must not leave clutter)."""
    with contextlib.suppress(Exception), cat._session.transaction() as tx:
        schema = tx.bucket(cat.config.bucket).schema(cat.config.schema)
        for t in schema.tables():
            t.drop()
        schema.drop()


class TestLiveVast(CatalogContract):
    @pytest.fixture
    def catalog(self):
        from exr_inspector.catalog.vast import VastCatalog

        cat = VastCatalog(f"vast://{os.environ['VAST_DB_BUCKET']}/exr_inspector_test_{uuid.uuid4().hex[:10]}")
        try:
            yield cat
        finally:
            _drop(cat)
            cat.close()

    def read_table(self, catalog, table: str) -> pa.Table:
        t = catalog.scan(table)
        return t.sort_by([(k, "ascending") for k in ROW_KEYS[table]]) if table in ROW_KEYS else t
