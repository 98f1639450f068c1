"""Path validation shared by policies, the CLI and the plan."""

from __future__ import annotations

import os

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
