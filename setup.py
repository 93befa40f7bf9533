"""Builds the optional native scanner, and the embedder's numba kernels ahead of time.

A failed compile leaves a working package and a warning, never a failed install:
without the scanner the pure-Python parser runs, without the compiled kernels numba
JIT-compiles the same source at run time.
"""

import importlib.util
import os
import sys
import tempfile

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


# The embedder's kernels, compiled from their numba source by numba's AOT compiler.
AOT = "exr_inspector.embed._kernels_aot"
AOT_SOURCE = os.path.join("src", "exr_inspector", "embed", "numba_kernels.py")


def build_kernels(ext_path: str) -> None:
    """Compile ``AOT_SOURCE``'s kernels into the extension module at ``ext_path``."""
    # numba's JIT cache is keyed by source file: loading the file under another module name
    # must not leave entries there that the package's own import would then trip over.
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="exr-inspector-numba-")
    spec = importlib.util.spec_from_file_location("_exr_inspector_numba_kernels", AOT_SOURCE)
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)  # imports numba: a build requirement (pyproject.toml)
    cc = source.aot_module(AOT.rsplit(".", 1)[1], os.path.dirname(ext_path) or ".")
    cc.compile()


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to Python
            print(f"WARNING: exr-inspector native extension not built ({exc}); using the Python parser",
                  file=sys.stderr)

    def build_extension(self, ext):
        try:
            if ext.name == AOT:
                build_kernels(self.get_ext_fullpath(ext.name))
                return
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            fallback = "numba will JIT-compile the kernels" if ext.name == AOT else "using the Python parser"
            print(f"WARNING: building {ext.name} failed ({exc}); {fallback}", file=sys.stderr)


setup(
    ext_modules=[
        Extension(
            "exr_inspector._core",
            sources=SOURCES,
            depends=[os.path.join(NATIVE, h) for h in ("internal_scan.h", "internal_decode.h", "internal_io.h", "internal_columns.h", "internal_dtoa.h")],
            extra_compile_args=extra_compile,
            extra_link_args=extra_link,
        ),
        Extension(AOT, sources=[], depends=[AOT_SOURCE]),  # built by build_kernels
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
