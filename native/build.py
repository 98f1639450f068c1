"""cffi builder for `isolation._native` (API mode, out of line; run by `pip install`)."""

from __future__ import annotations

import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "sandbox.h").read_text())
ffibuilder.set_source(
    "isolation._native",
    '#include "sandbox.h"',
    # relative paths: setuptools refuses absolute ones
    sources=[f"native/{name}.c" for name in ("spawn", "mounts", "worker", "report", "probe")],
    include_dirs=["native"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
