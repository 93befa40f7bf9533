"""Loopback VAST DataBase server for tests (see ``server`` for the API and what it enforces)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .server import MAX_REQUEST_BODY, VAST_VERSION, LoopbackVast, RequestRecord

__all__ = ["MAX_REQUEST_BODY", "VAST_VERSION", "LoopbackVast", "RequestRecord", "loopback_vast"]


@contextmanager
def loopback_vast(**kwargs: Any) -> Iterator[LoopbackVast]:
    """A started server (``kwargs`` as for ``LoopbackVast``), stopped on exit; usable from any fixture."""
    with LoopbackVast(**kwargs) as srv:
        yield srv
