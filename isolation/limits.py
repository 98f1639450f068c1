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
    """None means "no limit" except for `max_output` (default 64 MiB per stream)."""

    wall_timeout: float | None = None
    cpu_seconds: int | None = None
    memory: int | None = None
    max_pids: int | None = None
    max_open_files: int | None = None
    max_file_size: int | None = None
    max_output: int | None = DEFAULT_MAX_OUTPUT

    def __attrs_post_init__(self) -> None:
        _positive("wall_timeout", self.wall_timeout, integer=False)
        for name in ("cpu_seconds", "memory", "max_pids", "max_open_files", "max_file_size", "max_output"):
            _positive(name, getattr(self, name), integer=True)

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
        for name in ("memory", "max_file_size", "max_output"):
            if isinstance(values.get(name), str):
                values[name] = parse_size(values[name])
        return cls(**values)

    def requested(self) -> dict[str, int | float]:
        """The limits that are set, by name."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}
