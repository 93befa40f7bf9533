"""Builds the optional native scanner. A failed compile leaves a working package
(the pure-Python parser) and a warning, never a failed install."""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = "native"
SOURCES = [os.path.join(NATIVE, f) for f in ("exr_scan.c", "exr_decode.c", "exr_io.c", "exr_columns.c", "exr_dtoa.c", "exr_module.c")]
DEBUG = os.environ.get("EXR_INSPECTOR_DEBUG_BUILD") == "1"  # -O0 -g with ASan/UBSan for fuzzing

extra_compile = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_GNU_SOURCE"]
extra_link = []
if DEBUG:
    extra_compile += ["-O0", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    extra_link += ["-fsanitize=address,undefined"]
else:
    extra_compile += ["-O2"]


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to Python
            print(f"WARNING: exr-inspector native extension not built ({exc}); using the Python parser",
                  file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"WARNING: building {ext.name} failed ({exc}); using the Python parser", file=sys.stderr)


setup(
    ext_modules=[
        Extension(
            "exr_inspector._core",
            sources=SOURCES,
            depends=[os.path.join(NATIVE, h) for h in ("internal_scan.h", "internal_decode.h", "internal_io.h", "internal_columns.h", "internal_dtoa.h")],
            extra_compile_args=extra_compile,
            extra_link_args=extra_link,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
