"""Test-only launcher: run a module or a script as if the host lacked features.

    python tests/_with_host.py SPEC -m isolation run ...
    python tests/_with_host.py SPEC script.py ARGS...

SPEC is comma-separated: ``userns``, ``landlock``, ``seccomp`` (the host lacks
it), ``landlock-abi=N`` (caps the ABI), ``landlock-unlisted=/path`` (leaves that
sandbox path's Landlock rule out); ``""`` simulates nothing. The simulation is
applied in this process through `isolation.backends.native.simulate_host`
before the module or script runs: the library itself reads no environment
variable or file for it. The `host_lacking` fixture (conftest.py) parses the same SPEC.
"""

from __future__ import annotations

import runpy
import sys

from isolation.backends.native import SimulatedHost, simulate_host


def parse(spec: str) -> SimulatedHost:
    lacks: set[str] = set()
    abi: int | None = None
    unlisted: set[str] = set()
    for item in (i.strip() for i in spec.split(",")):
        if item.startswith("landlock-abi="):
            abi = int(item.split("=", 1)[1])
        elif item.startswith("landlock-unlisted="):
            unlisted.add(item.split("=", 1)[1])
        elif item in ("userns", "landlock", "seccomp"):
            lacks.add(item)
        elif item:
            raise ValueError(f"unknown host feature {item!r} in {spec!r}")
    return SimulatedHost(
        userns="userns" not in lacks,
        landlock="landlock" not in lacks,
        landlock_abi=abi,
        seccomp="seccomp" not in lacks,
        landlock_unlisted=frozenset(unlisted),
    )


def main(argv: list[str]) -> None:
    if len(argv) < 3 or (argv[2] == "-m" and len(argv) < 4):
        raise SystemExit("usage: _with_host.py SPEC (-m MODULE | SCRIPT) [ARGS...]")
    host = parse(argv[1])
    with simulate_host(host):
        if argv[2] == "-m":
            sys.argv = [argv[3], *argv[4:]]
            runpy.run_module(argv[3], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv[2:]
            runpy.run_path(argv[2], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)
