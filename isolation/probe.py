"""What this host can enforce: the facts behind backend selection (`isolation probe`)."""

from __future__ import annotations

import ctypes
import os
from typing import Any

from isolation.backends import AUTO_ORDER, get_backend
from isolation.backends.bwrap import bwrap_version, find_bwrap
from isolation.errors import IsolationUnavailable
from isolation.userns import userns_status

_SYS_LANDLOCK_CREATE_RULESET = 444  # same number on every architecture
_LANDLOCK_CREATE_RULESET_VERSION = 1


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is unsupported or disabled."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(
        ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
    )
    return int(abi) if abi > 0 else 0


def seccomp_available() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


def cgroup2_mount() -> str | None:
    """Where cgroup v2 is mounted (not necessarily /sys/fs/cgroup), or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return None


def probe() -> dict[str, Any]:
    bwrap = find_bwrap()
    userns_ok, userns_why = userns_status()
    backends: dict[str, Any] = {}
    auto: str | None = None
    for name in AUTO_ORDER:
        try:
            avail = get_backend(name).availability()
            backends[name] = {"available": avail.ok, "detail": avail.reason}
        except IsolationUnavailable as exc:
            backends[name] = {"available": False, "detail": str(exc)}
        if auto is None and backends[name]["available"]:
            auto = name
    return {
        "kernel": os.uname().release,
        "euid": os.geteuid(),
        "bwrap": {"path": bwrap, "version": ".".join(map(str, bwrap_version(bwrap))) if bwrap else None},
        "user_namespaces": {"available": userns_ok, "detail": userns_why},
        "landlock_abi": landlock_abi(),
        "seccomp": seccomp_available(),
        "cgroup2": cgroup2_mount(),
        "backends": backends,
        "auto": auto,
    }
