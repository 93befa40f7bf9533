"""Typed parse errors: a stable ``code`` a machine can branch on, and a message a person can act on."""

from __future__ import annotations

ERROR_CODES = (
    "not_exr",
    "unsupported_version",
    "truncated",
    "bad_attribute",
    "header_too_large",
    "io_error",
)


class ExrError(Exception):
    """A file whose header cannot be read. ``offset`` is the byte where the fault starts."""

    def __init__(self, code: str, message: str, offset: int | None = None, path: str | None = None):
        super().__init__(code, message, offset, path)
        self.code = code
        self.message = message
        self.offset = offset
        self.path = path
        # What stat said about the file, when it could be opened: crawl error rows keep it.
        self.size_bytes: int | None = None
        self.mtime_ns: int | None = None

    def with_path(self, path: str | None) -> ExrError:
        e = ExrError(self.code, self.message, self.offset, path)
        e.size_bytes, e.mtime_ns = self.size_bytes, self.mtime_ns
        return e

    def __str__(self) -> str:
        where = f" (at byte {self.offset})" if self.offset is not None else ""
        head = f"{self.path}: " if self.path else ""
        return f"{head}{self.message}{where}"

    def to_dict(self) -> dict:
        return {"code": self.code, "message": str(self), "offset": self.offset}


class NeedMore(Exception):
    """Raised by the parser when the header runs past the bytes read so far."""

    def __init__(self, needed: int):
        super().__init__(needed)
        self.needed = needed
