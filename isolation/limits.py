"""Resource limits of a sandbox: what the policy asks for, and how sizes are written.

Which mechanism enforces each limit (the runner, rlimits or a cgroup) depends
on the backend and the host; `RunResult.enforced` says which did. A limit that
cannot be enforced is an error unless the caller asked for best effort.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from isolation.errors import PolicyError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

# Bytes captured per stream when the caller sets nothing: far above what a
# build or test suite prints, and it keeps the caller's memory bounded.
DEFAULT_MAX_OUTPUT = 64 << 20

# Bytes each writable tmpfs of a sandbox (/tmp, /work, /dev/shm) may hold when the
# caller sets nothing (and sets no smaller `memory`): tmpfs pages are not charged
# to any rlimit, so without a bound one sandbox could fill the host's memory.
DEFAULT_TMPFS_SIZE = 1 << 30

# Pseudo-terminals one sandbox may hold at once when the caller sets nothing: the
# host's pty table is shared (kernel.pty.max), so an unbounded devpts lets one
# sandbox take every pty of the host.
DEFAULT_MAX_PTYS = 16

# Limits that bound the sandbox's own file systems; set on every run.
MOUNT_BOUNDS = frozenset({"tmpfs_size", "max_ptys"})


def parse_size(text: str | int) -> int:
    """``512M``, ``2G``, ``1.5K``, ``4096`` -> bytes (binary units)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise PolicyError(f"size must not be negative: {text}")
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise PolicyError(f"invalid size {text!r}; write bytes or a number with K, M, G or T (e.g. 512M, 2G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _positive(name: str, value: Any, *, integer: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise PolicyError(f"limits.{name}: expected {kind}, got {value!r}")
    if value <= 0:
        raise PolicyError(f"limits.{name}: must be positive, got {value!r}")
    return value


@attrs.frozen
class Limits:
    """None means "no limit" except for `max_output` (default 64 MiB per stream),
    `tmpfs_size` (None: the smaller of `memory` and 1 GiB, see `tmpfs_bytes`) and
    `max_ptys` (default 16; 0: no pseudo-terminals at all)."""

    wall_timeout: float | None = None
    cpu_seconds: int | None = None
    memory: int | None = None
    max_pids: int | None = None
    max_open_files: int | None = None
    max_file_size: int | None = None
    max_output: int | None = DEFAULT_MAX_OUTPUT
    tmpfs_size: int | None = None
    max_ptys: int = DEFAULT_MAX_PTYS

    def __attrs_post_init__(self) -> None:
        _positive("wall_timeout", self.wall_timeout, integer=False)
        sizes = ("cpu_seconds", "memory", "max_pids", "max_open_files", "max_file_size", "max_output", "tmpfs_size")
        for name in sizes:
            _positive(name, getattr(self, name), integer=True)
        if isinstance(self.max_ptys, bool) or not isinstance(self.max_ptys, int) or self.max_ptys < 0:
            raise PolicyError(f"limits.max_ptys: expected an integer >= 0, got {self.max_ptys!r}")

    def tmpfs_bytes(self) -> int:
        """The size bound of each writable tmpfs: `tmpfs_size`, else min(`memory`, 1 GiB)."""
        if self.tmpfs_size is not None:
            return self.tmpfs_size
        return min(self.memory, DEFAULT_TMPFS_SIZE) if self.memory is not None else DEFAULT_TMPFS_SIZE

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Limits:
        if not isinstance(data, dict):
            raise PolicyError(f"limits: expected an object, got {type(data).__name__}")
        fields = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise PolicyError(f"limits: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
        values = dict(data)
        for name in ("memory", "max_file_size", "max_output", "tmpfs_size"):
            if isinstance(values.get(name), str):
                values[name] = parse_size(values[name])
        return cls(**values)

    def requested(self) -> dict[str, int | float]:
        """The limits that are set, by name; not the bounds every sandbox's own file
        systems carry (`tmpfs_size`, `max_ptys`), which the backends claim with the mounts."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None and k not in MOUNT_BOUNDS}
