"""Limits enforced with setrlimit(2): the mechanism that needs no cgroup.

Both sandboxing backends apply these to the sandboxed command (the native
backend between fork and exec in C; bwrap from outside with prlimit(2) while
the sandbox waits on its block fd). Each is per process except RLIMIT_NPROC,
which the kernel counts per user inside the sandbox's user namespace.
"""

from __future__ import annotations

import os
import resource

import attrs

from isolation.cgroups import pids_v1_parent
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


@attrs.frozen
class SandboxLimits:
    """How a namespace sandbox (native or bwrap) enforces a policy's limits on this host."""

    rlimits: tuple[RlimitSetting, ...]
    # Root caller with max_pids: the cgroup v1 pids hierarchy to create the sandbox's cgroup in.
    pids_cgroup_parent: str | None = None


def sandbox_enforced_limits() -> frozenset[str]:
    """The limits a namespace sandbox enforces for this caller on this host.

    RLIMIT_NPROC is not applied by the kernel to host uid 0, and a root
    caller's sandbox runs as host uid 0 (65534 inside maps to it): for a root
    caller `max_pids` is enforced with a cgroup v1 pids controller where the
    host has one, and not claimed otherwise.
    """
    if os.geteuid() == 0 and pids_v1_parent() is None:
        return RLIMIT_LIMITS - {"max_pids"}
    return RLIMIT_LIMITS


def sandbox_limits(limits: Limits) -> SandboxLimits:
    """The rlimits to set and, for a root caller's max_pids, where its pids cgroup goes."""
    root = os.geteuid() == 0
    enforced = sandbox_enforced_limits()
    settings = tuple(
        st for st in rlimit_settings(limits) if st.name in enforced and not (st.name == "max_pids" and root)
    )
    parent = pids_v1_parent() if root and limits.max_pids is not None else None
    return SandboxLimits(settings, parent)
