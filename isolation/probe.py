"""What this host can enforce: the facts behind backend selection (`isolation probe`)."""

from __future__ import annotations

import os
from typing import Any

from isolation.backends import AUTO_ORDER, get_backend
from isolation.backends.bwrap import bwrap_version, find_bwrap
from isolation.cgroups import cgroup_status, pids_v1_parent
from isolation.errors import IsolationError
from isolation.userns import landlock_status, seccomp_status, userns_status


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is unsupported, disabled or refused."""
    return landlock_status()[0]


def seccomp_available() -> bool:
    """Whether seccomp(2) answers here (a filter refusing it, or no kernel support, reads no)."""
    return seccomp_status()[0]


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
    """The host's facts, and each backend's availability as a minimal real sandbox of it
    shows (see `isolation.backends.canary`): `auto` is the backend `auto` picks."""
    bwrap = find_bwrap()
    userns_ok, userns_why = userns_status()
    abi, landlock_why = landlock_status()
    seccomp_ok, seccomp_why = seccomp_status()
    backends: dict[str, Any] = {}
    auto: str | None = None
    for name in AUTO_ORDER:
        try:
            avail = get_backend(name).availability()
            backends[name] = {"available": avail.ok, "detail": avail.reason}
        except IsolationError as exc:
            backends[name] = {"available": False, "detail": str(exc)}
        if auto is None and backends[name]["available"]:
            auto = name
    return {
        "kernel": os.uname().release,
        "euid": os.geteuid(),
        "bwrap": {"path": bwrap, "version": ".".join(map(str, bwrap_version(bwrap))) if bwrap else None},
        "user_namespaces": {"available": userns_ok, "detail": userns_why},
        "landlock_abi": abi,
        "landlock": {"available": abi > 0, "detail": landlock_why},
        "seccomp": seccomp_ok,
        "seccomp_detail": seccomp_why,
        "cgroup2": cgroup2_mount(),
        "cgroup_limits": cgroup_status().to_dict(),
        "pids_cgroup_v1": pids_v1_parent(),
        "backends": backends,
        "auto": auto,
    }
