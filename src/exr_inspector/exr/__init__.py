"""OpenEXR header parsing: the pure-Python reference and the native fast path behind one API."""

from .errors import ERROR_CODES, ExrError
from .header import parse_header
from .reader import FileHeader, native_available, parse_bytes, read_header, use_native

__all__ = [
    "ERROR_CODES",
    "ExrError",
    "FileHeader",
    "native_available",
    "parse_bytes",
    "parse_header",
    "read_header",
    "use_native",
]
