"""Builds the native parts; metadata lives in pyproject.toml.

- `isolation._native`: the cffi extension (native/build.py, spawn.c and the files
  it uses).
- `isolation/_isolation_init`: a small static program that becomes pid 1 of
  each native sandbox (native/init.c), built next to the extension.
- `isolation/_isolation_egress`: the first program of a sandbox with an egress
  allowlist (native/egress_listen.c), for both backends.
- `isolation/_isolation_exec`: the static program bubblewrap executes in a
  bwrap sandbox, which reports whether the command's execve happened
  (native/bwrap_exec.c).

`python -m build` makes a binary wheel carrying all four. The extension uses
only CPython's limited API (cffi builds it so), hence the `cp311-abi3` tag: one
wheel for every Python >= 3.11. `auditwheel repair` then gives it the manylinux
tag of the glibc symbol versions it needs (.ci/wheel-check).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile

from setuptools import setup
from setuptools.command.build_ext import build_ext

INIT_SOURCES = [os.path.join("native", f"{name}.c") for name in ("init", "command", "worker", "report")]
INIT_NAME = "_isolation_init"
# The egress helper: made the first program of a sandbox with an allowlist (native/egress_listen.c).
EGRESS_SOURCES = [os.path.join("native", "egress_listen.c")]
EGRESS_NAME = "_isolation_egress"
EXEC_SOURCES = [os.path.join("native", "bwrap_exec.c")]
EXEC_NAME = "_isolation_exec"


def _build_init_with_musl(target: str) -> bool:
    """Link isolation-init statically against musl when musl-gcc is installed (Debian:
    musl-tools); False (build it with glibc instead) when it is not, or fails.

    isolation-init is executed once per native sandbox, on the run's path. A static
    glibc's start-up probes the CPU (init_cpu_features, the cache sizes: dozens of
    CPUID instructions), and in a virtual machine every CPUID traps to the
    hypervisor: about 0.3 ms of CPU per exec on the 2-core test VM (perf), against
    none for musl's start-up. Same source, same steps; only the libc differs.
    """
    musl = shutil.which("musl-gcc")
    if musl is None or platform.machine() != "x86_64":
        return False
    with tempfile.TemporaryDirectory() as inc:
        # musl's include path has no kernel headers: the system's, looked up last.
        for name, src in (("linux", "/usr/include/linux"), ("asm-generic", "/usr/include/asm-generic"),
                          ("asm", "/usr/include/x86_64-linux-gnu/asm")):
            if not os.path.isdir(src):
                return False
            os.symlink(src, os.path.join(inc, name))
        cmd = [musl, "-O2", "-Wall", "-static", "-Inative", "-idirafter", inc, "-o", target, *INIT_SOURCES]
        return subprocess.run(cmd, check=False).returncode == 0


class BuildExtWithInit(build_ext):
    def run(self) -> None:
        super().run()
        out_dir = "isolation" if self.inplace else os.path.join(self.build_lib, "isolation")
        objects = self.compiler.compile(
            INIT_SOURCES, output_dir=self.build_temp, include_dirs=["native"], extra_postargs=["-O2", "-Wall"]
        )
        if not _build_init_with_musl(os.path.join(out_dir, INIT_NAME)):
            self.compiler.link_executable(objects, INIT_NAME, output_dir=out_dir, extra_postargs=["-static"])
        # Without libc where the program has its system-call stub: it runs before every
        # bwrap command, and a static glibc's start-up costs more than the rest of it.
        nolibc = platform.machine() in ("x86_64", "aarch64")
        cflags = ["-O2", "-Wall", *(["-ffreestanding", "-fno-stack-protector", "-fno-pie"] if nolibc else [])]
        macros: list[tuple[str, str | None]] = [("ISO_NOLIBC", "1")] if nolibc else []
        objects = self.compiler.compile(EXEC_SOURCES, output_dir=self.build_temp, macros=macros, extra_postargs=cflags)
        lflags = ["-static", *(["-nostdlib", "-no-pie"] if nolibc else [])]
        self.compiler.link_executable(objects, EXEC_NAME, output_dir=out_dir, extra_postargs=lflags)
        objects = self.compiler.compile(EGRESS_SOURCES, output_dir=self.build_temp, extra_postargs=["-O2", "-Wall"])
        self.compiler.link_executable(objects, EGRESS_NAME, output_dir=out_dir, extra_postargs=["-static"])

    def get_outputs(self) -> list[str]:
        return [
            *super().get_outputs(),
            os.path.join(self.build_lib, "isolation", INIT_NAME),
            os.path.join(self.build_lib, "isolation", EXEC_NAME),
            os.path.join(self.build_lib, "isolation", EGRESS_NAME),
        ]


setup(
    cffi_modules=["native/build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithInit},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
