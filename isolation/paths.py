"""Path validation shared by policies, the CLI and the plan."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from isolation.errors import PolicyError

# Sandbox locations the sandbox itself owns: a bind there would replace the
# fresh /proc or /dev (and binding host /proc would expose host processes).
RESERVED_TARGETS: tuple[str, ...] = ("/proc", "/dev")


def normalize_path(path: object, *, what: str) -> str:
    """Return `path` normalized, or raise PolicyError saying what is wrong with it.

    Accepted: absolute paths without NUL bytes and without ``..`` components
    (``..`` is refused rather than resolved because the host and the sandbox
    may disagree about symlinks on the way). Trailing and doubled slashes and
    ``.`` components are removed.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise PolicyError(f"{what}: expected a path string, got {type(path).__name__}")
    if "\x00" in path:
        raise PolicyError(f"{what}: path {path!r} contains a NUL byte")
    if not path.startswith("/"):
        raise PolicyError(f"{what}: path {path!r} is not absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PolicyError(f"{what}: path {path!r} contains '..'; give the resolved path")
    return "/" + "/".join(parts)


def is_within(path: str, parent: str) -> bool:
    """True when `path` equals `parent` or lies below it (both normalized)."""
    return parent == "/" or path == parent or path.startswith(parent + "/")


def is_executable_file(path: str) -> bool:
    """A regular file (after symlinks) that this process may execute."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def check_sandbox_target(path: str, *, what: str) -> None:
    if path == "/":
        raise PolicyError(f"{what}: cannot bind over the sandbox root '/'")
    for reserved in RESERVED_TARGETS:
        if is_within(path, reserved):
            raise PolicyError(f"{what}: {path} is inside {reserved}, which the sandbox provides itself")


def check_host_source(path: str, *, what: str) -> None:
    if is_within(path, "/proc"):
        raise PolicyError(f"{what}: host path {path} is under /proc; binding it could expose host processes")


# File systems that are the kernel's own interface, not data: a bind carrying one
# (as its source, or as a submount, since binds are recursive) would show the
# host's processes, devices, cgroups, BPF objects or firmware variables inside.
KERNEL_FS_TYPES: frozenset[str] = frozenset({
    "proc", "sysfs", "debugfs", "tracefs", "securityfs", "cgroup", "cgroup2", "bpf", "configfs",
    "efivarfs", "pstore", "binfmt_misc", "fusectl", "nsfs", "selinuxfs", "smackfs", "rpc_pipefs",
})  # fmt: skip
MOUNTINFO = "/proc/self/mountinfo"


def _unescape_mountinfo(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in paths as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(mountinfo: str = MOUNTINFO) -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount this process sees, in mountinfo order."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise PolicyError(
            f"cannot read {mountinfo} to check bind sources for kernel file systems: {exc.strerror}; "
            "mount /proc in the caller's mount namespace"
        ) from None
    mounts = []
    for line in lines:
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            mounts.append((_unescape_mountinfo(fields[4]), fields[sep + 1]))
        except (ValueError, IndexError):
            raise PolicyError(f"cannot parse {mountinfo}: {line!r}") from None
    return mounts


def check_no_kernel_fs(sources: Sequence[tuple[str, str]], mounts: Sequence[tuple[str, str]]) -> None:
    """Refuse a bind whose source is on, or holds a submount of, a kernel file system.

    `sources`: (what, host path) pairs; each path is resolved first, so a symlink
    to /proc is judged by where it leads. `mounts`: from `read_mounts`.
    """
    for what, path in sources:
        real = os.path.realpath(path)
        via = "" if real == path else f" (it resolves to {real})"
        # The mount a path lies on is the one with the longest mount point above it; of
        # several stacked on one mount point, the last listed is on top.
        fs_type = ""
        best = -1
        for point, kind in mounts:
            if is_within(real, point) and len(point) >= best:
                best, fs_type = len(point), kind
        if fs_type in KERNEL_FS_TYPES:
            raise PolicyError(
                f"{what}: host path {path}{via} is on a {fs_type} file system, the kernel's interface to the "
                "host; binding it would expose host processes or state. Bind a directory of ordinary files"
            )
        for point, kind in mounts:
            if kind in KERNEL_FS_TYPES and point != real and is_within(point, real):
                raise PolicyError(
                    f"{what}: host path {path}{via} holds a {kind} file system mounted at {point}; binds carry "
                    f"their submounts, so it would expose host processes or state. Unmount {point} or bind a "
                    "directory without it"
                )
