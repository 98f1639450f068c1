"""Builds the native parts; metadata lives in pyproject.toml.

- `isolation._native`: the cffi extension (native/build.py, sandbox.c).
- `isolation/_isolation_init`: a small static program that becomes pid 1 of
  each native sandbox (native/init.c), built next to the extension.
- `isolation/_isolation_egress`: the first program of a sandbox with an egress
  allowlist (native/egress_listen.c), for both backends.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

INIT_SOURCES = [os.path.join("native", "init.c"), os.path.join("native", "worker.c")]
INIT_NAME = "_isolation_init"
# The egress helper: made the first program of a sandbox with an allowlist (native/egress_listen.c).
EGRESS_SOURCES = [os.path.join("native", "egress_listen.c")]
EGRESS_NAME = "_isolation_egress"


class BuildExtWithInit(build_ext):
    def run(self) -> None:
        super().run()
        out_dir = "isolation" if self.inplace else os.path.join(self.build_lib, "isolation")
        objects = self.compiler.compile(
            INIT_SOURCES, output_dir=self.build_temp, include_dirs=["native"], extra_postargs=["-O2", "-Wall"]
        )
        self.compiler.link_executable(objects, INIT_NAME, output_dir=out_dir, extra_postargs=["-static"])
        objects = self.compiler.compile(EGRESS_SOURCES, output_dir=self.build_temp, extra_postargs=["-O2", "-Wall"])
        self.compiler.link_executable(objects, EGRESS_NAME, output_dir=out_dir, extra_postargs=["-static"])

    def get_outputs(self) -> list[str]:
        outputs = [os.path.join(self.build_lib, "isolation", n) for n in (INIT_NAME, EGRESS_NAME)]
        return [*super().get_outputs(), *outputs]


setup(cffi_modules=["native/build.py:ffibuilder"], cmdclass={"build_ext": BuildExtWithInit})
