"""VAST DataEngine entry points: ``init(ctx)`` once per container, ``handler(ctx, event)`` per event.

An event names files (``path``, or ``paths``); they are parsed like a crawl chunk and
upserted into the VAST catalog in one transaction. Settings come from the context
(``vastdb_endpoint``, ``vastdb_access_key``, ``vastdb_secret_key``, ``bucket``,
``schema``, ``allow_insecure``), then the environment (see ``VastConfig``). Without an
endpoint the files are still parsed and returned, and the result says persistence was
skipped and why: nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from .catalog.base import CatalogError
from .crawl.batch import build_batch
from .crawl.columns import scan_chunk
from .crawl.walk import normalize

_CTX_KEYS = {"vastdb_endpoint": "endpoint", "vastdb_access_key": "access_key", "vastdb_secret_key": "secret_key",
             "bucket": "bucket", "schema": "schema", "allow_insecure": "allow_insecure"}
_catalogs: dict = {}


def _settings(ctx) -> dict:
    get = ctx.get if isinstance(ctx, Mapping) else (lambda k: getattr(ctx, k, None))
    return {ours: get(theirs) for theirs, ours in _CTX_KEYS.items() if get(theirs) not in (None, "")}


def init(ctx) -> None:
    """Nothing to warm: the catalog connects on the first event that has somewhere to write."""
    _catalogs.clear()


def _catalog(settings: dict):
    from .catalog.vast import VastCatalog
    from .catalog.vast_config import VastConfig

    config = VastConfig.resolve("vast://", **settings)
    if config not in _catalogs:  # one Session per distinct configuration, reused across events
        _catalogs[config] = VastCatalog(config.url, config=config)
    return _catalogs[config]


def handler(ctx, event: Mapping) -> dict:
    """Parse the event's files and upsert them; returns counts, error records and the persistence outcome."""
    paths = event.get("paths") or ([event["path"]] if event.get("path") else [])
    if not paths:
        return {"files": 0, "errors": [], "persistence": "skipped", "reason": "the event names no file"}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    batch = build_batch(scan_chunk([normalize(p) for p in paths]), now, f"dataengine-{uuid.uuid4().hex}")
    result: dict = {
        "files": batch.num_files,
        "errors": [{"path": r["path"], "code": r["error_code"], "message": r["message"]}
                   for r in batch.errors.select(["path", "error_code", "message"]).to_pylist()],
    }
    try:
        catalog = _catalog(_settings(ctx))
        stats = catalog.upsert(batch)
    except CatalogError as e:
        skipped = "not configured" in str(e)
        result.update(persistence="skipped" if skipped else "failed", reason=str(e))
        return result
    result.update(persistence="written", catalog=catalog.url, inserted=stats.inserted, replaced=stats.replaced,
                  unchanged=stats.unchanged)
    return result
