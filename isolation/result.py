"""`RunResult`: what ran, how it ended, and exactly which isolation layers were enforced."""

from __future__ import annotations

import signal
from typing import Literal

import attrs

Outcome = Literal["exited", "signaled", "timeout"]


@attrs.frozen
class RunResult:
    """`returncode` follows subprocess: >= 0 exit status, -N killed by signal N.

    `enforced` lists the layers that were actually applied, one string each,
    for example ``namespace:user``, ``seccomp:default:sha256=...`` or
    ``landlock:abi=7:fs,net,scope``. Nothing is listed that was not enforced.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    backend: str
    duration: float
    enforced: tuple[str, ...]
    outcome: Outcome = "exited"
    missing: tuple[str, ...] = ()
    output_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def timed_out(self) -> bool:
        return self.outcome == "timeout"

    def exit_status(self) -> int:
        """The shell-style status the CLI exits with: 128+N for a signal."""
        return 128 - self.returncode if self.returncode < 0 else self.returncode

    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"
