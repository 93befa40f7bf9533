"""Where the VAST catalog lives and who we are to it: resolved once, secrets masked.

Kept apart from ``vast.py`` so configuration errors (no endpoint, a bare host name,
plain HTTP) are reported without importing the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from .base import CatalogError

DEFAULT_SCHEMA = "exr_metadata"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TRIES = 6  # 503 SlowDown retries, exponential backoff
DEFAULT_WRITERS = 4

# (setting, primary variable, fallback variable)
_ENV = (
    ("endpoint", "VAST_DB_ENDPOINT", "S3_ENDPOINT"),
    ("access_key", "VAST_DB_ACCESS_KEY", "S3_ACCESS_KEY"),
    ("secret_key", "VAST_DB_SECRET_KEY", "S3_SECRET_KEY"),
    ("bucket", "VAST_DB_BUCKET", None),
    ("schema", "VAST_DB_SCHEMA", None),
)


def mask(secret: str | None) -> str:
    """A secret as logs may show it: never more than its first two characters."""
    if not secret:
        return "<unset>"
    return secret[:2] + "****" if len(secret) >= 8 else "****"


def validate_endpoint(endpoint: str, allow_insecure: bool) -> str:
    """The endpoint as a full http(s) URL without a trailing slash; refuse anything else clearly."""
    e = endpoint.strip()
    parts = urlsplit(e)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CatalogError(
            f"VAST endpoint {e!r} is not a URL: give the scheme and host, e.g. https://{e or 'vast.example.com'} "
            "(set VAST_DB_ENDPOINT or --vast-endpoint)")
    if parts.username or parts.password:
        raise CatalogError("VAST endpoint must not carry credentials; set VAST_DB_ACCESS_KEY and VAST_DB_SECRET_KEY")
    if parts.scheme == "http" and not allow_insecure:
        raise CatalogError(
            f"VAST endpoint {e} is plain http: keys and data would cross the network unencrypted; "
            "use https:// or pass --allow-insecure")
    return e.rstrip("/")


@dataclass(frozen=True)
class VastConfig:
    """Everything needed to reach one catalog. ``repr`` never shows the secret."""

    endpoint: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    bucket: str
    schema: str = DEFAULT_SCHEMA
    allow_insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    max_tries: int = DEFAULT_MAX_TRIES
    writers: int = DEFAULT_WRITERS

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"VastConfig({shown}, access_key={mask(self.access_key)!r}, secret_key='****')"

    @property
    def url(self) -> str:
        return f"vast://{self.bucket}/{self.schema}"

    def scrub(self, text: str) -> str:
        """``text`` with both keys replaced: SDK messages are passed on only through this."""
        for secret in (self.secret_key, self.access_key):
            if secret:
                text = text.replace(secret, mask(secret))
        return text

    @classmethod
    def resolve(cls, url: str = "vast://", env: Mapping[str, str] | None = None, **given) -> VastConfig:
        """Explicit arguments, then the environment (VAST_DB_*, then S3_*), then defaults.

        ``url`` is ``vast://BUCKET/SCHEMA``; either part may come from the
        environment instead (``vast://`` alone uses VAST_DB_BUCKET and VAST_DB_SCHEMA).
        """
        env = os.environ if env is None else env
        parts = urlsplit(url)
        if parts.scheme != "vast":
            raise CatalogError(f"not a VAST catalog URL: {url!r} (expected vast://BUCKET/SCHEMA)")
        if parts.username or parts.password or "@" in parts.netloc:
            raise CatalogError("credentials are not accepted in the catalog URL; "
                               "set VAST_DB_ACCESS_KEY and VAST_DB_SECRET_KEY")
        path = [p for p in parts.path.split("/") if p]
        if len(path) > 1:
            raise CatalogError(f"VAST catalog URL {url!r} has too many parts: expected vast://BUCKET/SCHEMA")
        from_url = {"bucket": parts.netloc or None, "schema": path[0] if path else None}
        settings: dict = {}
        for name, primary, fallback in _ENV:
            value = given.get(name) or from_url.get(name) or env.get(primary) or (fallback and env.get(fallback))
            if value:
                settings[name] = value
        if not settings.get("endpoint"):
            raise CatalogError("VAST_DB_ENDPOINT not configured: set it to the VAST VIP URL, e.g. "
                               "https://vast.example.com, or pass --vast-endpoint; nothing was written")
        for name, var in (("access_key", "VAST_DB_ACCESS_KEY"), ("secret_key", "VAST_DB_SECRET_KEY")):
            if not settings.get(name):
                raise CatalogError(f"{var} not configured: the S3 keys of a VAST user with a tabular "
                                   "identity policy are required; nothing was written")
        if not settings.get("bucket"):
            raise CatalogError("no VAST bucket: use --catalog vast://BUCKET/SCHEMA or set VAST_DB_BUCKET")
        allow = bool(given.get("allow_insecure"))
        settings["endpoint"] = validate_endpoint(settings["endpoint"], allow)
        extra = {k: given[k] for k in ("timeout", "max_tries", "writers") if given.get(k) is not None}
        return cls(allow_insecure=allow, **settings, **extra)
