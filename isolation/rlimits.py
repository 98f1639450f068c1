"""Limits enforced with setrlimit(2): the mechanism that needs no cgroup.

Both sandboxing backends apply these to the sandboxed command (the native
backend between fork and exec in C; bwrap from outside with prlimit(2) while
the sandbox waits on its block fd). Each is per process except RLIMIT_NPROC,
which the kernel counts per user inside the sandbox's user namespace.
"""

from __future__ import annotations

import resource

import attrs

from isolation.limits import Limits


@attrs.frozen
class RlimitSetting:
    name: str  # the Limits field
    resource: int  # RLIMIT_* number
    soft: int
    hard: int

    @property
    def claim(self) -> str:
        """The `RunResult.enforced` entry for this limit."""
        value = self.soft
        return f"limit:{self.name}={value}:rlimit"


# Limits field -> RLIMIT_*.  memory is RLIMIT_AS: the one bound that covers
# every allocation path (brk, mmap, thread stacks); it is per process.
_RESOURCES: dict[str, int] = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "memory": resource.RLIMIT_AS,
    "max_pids": resource.RLIMIT_NPROC,
    "max_open_files": resource.RLIMIT_NOFILE,
    "max_file_size": resource.RLIMIT_FSIZE,
}

RLIMIT_LIMITS = frozenset(_RESOURCES)


def rlimit_settings(limits: Limits) -> tuple[RlimitSetting, ...]:
    """The rlimits that enforce `limits` (only the ones that are set)."""
    out = []
    for name, res in _RESOURCES.items():
        value = getattr(limits, name)
        if value is None:
            continue
        soft = hard = int(value)
        if name == "cpu_seconds":
            hard = soft + 1  # SIGXCPU at the soft limit, SIGKILL one second later
        out.append(RlimitSetting(name, res, soft, hard))
    return tuple(out)
