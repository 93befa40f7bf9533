"""Numbers and names of the OpenEXR header format, shared by both parsers.

The C scanner in ``native/`` carries the same tables; ``tests/test_native_parity.py``
keeps the two in step.
"""

from __future__ import annotations

MAGIC = b"\x76\x2f\x31\x01"
FORMAT_VERSION = 2

FLAG_TILED = 0x200
FLAG_LONG_NAMES = 0x400
FLAG_NON_IMAGE = 0x800  # at least one deep part
FLAG_MULTIPART = 0x1000
KNOWN_FLAGS = FLAG_TILED | FLAG_LONG_NAMES | FLAG_NON_IMAGE | FLAG_MULTIPART

MAX_NAME_BYTES = 255  # what non-strict OpenEXRCore accepts whatever the flag says
SHORT_NAME_BYTES = 31  # the limit without FLAG_LONG_NAMES

# Limits that keep hostile input from costing unbounded memory or time.
FIRST_READ_BYTES = 64 * 1024
DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ITEMS = 1 << 20  # attributes + channels + vector elements per file

COMPRESSION_NAMES = (
    "NONE", "RLE", "ZIPS", "ZIP", "PIZ", "PXR24", "B44", "B44A",
    "DWAA", "DWAB", "HTJ2K256", "HTJ2K32", "LJ2K", "ZSTD",
)
LINE_ORDER_NAMES = ("INCREASING_Y", "DECREASING_Y", "RANDOM_Y")
ENVMAP_NAMES = ("LATLONG", "CUBE")
DEEP_IMAGE_STATE_NAMES = ("MESSY", "SORTED", "NON_OVERLAPPING", "TIDY")
LEVEL_MODE_NAMES = ("ONE_LEVEL", "MIPMAP", "RIPMAP")
ROUNDING_MODE_NAMES = ("DOWN", "UP")
PIXEL_TYPE_NAMES = ("UINT", "HALF", "FLOAT")

ENUM_TYPES = {
    "compression": COMPRESSION_NAMES,
    "lineOrder": LINE_ORDER_NAMES,
    "envmap": ENVMAP_NAMES,
    "deepImageState": DEEP_IMAGE_STATE_NAMES,
}

# Value size in bytes of every fixed-size attribute type.
FIXED_SIZES = {
    "box2i": 16, "box2f": 16, "chromaticities": 32, "compression": 1,
    "deepImageState": 1, "double": 8, "envmap": 1, "float": 4, "int": 4,
    "keycode": 28, "lineOrder": 1, "m33f": 36, "m33d": 72, "m44f": 64,
    "m44d": 128, "rational": 8, "tiledesc": 9, "timecode": 8,
    "v2i": 8, "v2f": 8, "v2d": 16, "v3i": 12, "v3f": 12, "v3d": 24,
}

PART_TYPES = ("scanlineimage", "tiledimage", "deepscanline", "deeptile")
TILED_PART_TYPES = ("tiledimage", "deeptile")
DEEP_PART_TYPES = ("deepscanline", "deeptile")

REQUIRED_ATTRIBUTES = {
    "channels": "chlist",
    "compression": "compression",
    "dataWindow": "box2i",
    "displayWindow": "box2i",
    "lineOrder": "lineOrder",
    "pixelAspectRatio": "float",
    "screenWindowCenter": "v2f",
    "screenWindowWidth": "float",
}
# Core requires these to be identical in every part of a file.
SHARED_ATTRIBUTES = ("displayWindow", "pixelAspectRatio", "timeCode", "chromaticities")


def enum_name(names: tuple[str, ...], value: int) -> str:
    """Upper-case name of an enum value; out-of-range values stay visible."""
    return names[value] if 0 <= value < len(names) else f"UNKNOWN_{value}"
