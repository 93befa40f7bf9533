"""Catalog backends behind one interface (``base.Catalog``); this module imports none of them."""

from __future__ import annotations

import os

DEFAULT_CATALOG = "exr_catalog.duckdb"


def is_new(url: str | None) -> bool:
    """Is ``url`` a DuckDB catalog that does not exist yet (or ``:memory:``)? A crawl into it parses
    every file it finds; told before DuckDB loads, so that reading can start sooner."""
    url = url or DEFAULT_CATALOG
    if "://" in url and not url.startswith("duckdb://"):
        return False
    path = url.removeprefix("duckdb://")
    return path == ":memory:" or not os.path.lexists(os.path.expanduser(path))
