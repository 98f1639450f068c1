"""`RunResult`: what ran, how it ended, and exactly which isolation layers were enforced."""

from __future__ import annotations

import signal
from typing import Literal

import attrs

Outcome = Literal["exited", "signaled", "timeout", "cpu", "file_size"]


@attrs.frozen
class Usage:
    """What a backend measured of its sandbox's processes (see docs/limits.md for the coverage)."""

    cpu_time: float  # user + system seconds
    peak_rss: int  # bytes: the largest resident set of any single measured process


@attrs.frozen
class NetworkRecord:
    """One destination the sandbox asked its egress proxy for (docs/network.md).

    `host` and `port` as asked; `address` the address connected to (or the one refused,
    None when nothing was resolved); `allowed` with `rule`: the entry that allowed it, or
    why it was refused. `sent`/`received`: bytes from the sandbox to the destination and back.
    """

    protocol: str  # "connect" (HTTP CONNECT), "http" (plain-HTTP forwarding) or "socks5"
    host: str
    port: int
    address: str | None
    allowed: bool
    rule: str
    sent: int = 0
    received: int = 0
    time: float = 0.0  # when it was asked (seconds since the epoch)

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


@attrs.frozen
class RunResult:
    """`returncode` follows subprocess: >= 0 exit status, -N killed by signal N.

    `enforced` lists the layers that were actually applied, one string each,
    for example ``namespace:user``, ``seccomp:default:sha256=...`` or
    ``landlock:abi=7:fs,net,scope``. Nothing is listed that was not enforced.

    `outcome` says why the run ended: ``exited``, ``signaled``, ``timeout`` (the
    runner killed it), ``cpu`` (SIGXCPU at the CPU limit, or SIGKILL with the
    measured CPU time at the limit) or ``file_size`` (SIGXFSZ under a file-size
    limit). Truncated output does not end a run: see `output_truncated` and
    `limits_hit`. docs/limits.md lists what is measured and what is not.
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
    # The signal that ended the command (see `Sandbox.term_signal` for bwrap's 128+N).
    term_signal: int | None = None
    # The `Limits` fields the run ran into: wall_timeout, cpu_seconds, max_file_size, max_output.
    limits_hit: tuple[str, ...] = ()
    # Measured by the backend once the sandbox ended; None when it cannot measure them
    # (docs/limits.md says what each backend covers). `duration` is the wall time.
    cpu_time: float | None = None
    peak_rss: int | None = None
    # With an egress allowlist: every destination asked for, allowed or refused, in order.
    network_log: tuple[NetworkRecord, ...] = ()

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
        sig = self.term_signal if self.term_signal is not None else (-self.returncode if self.returncode < 0 else None)
        if sig is None:
            return None
        try:
            return signal.Signals(sig).name
        except ValueError:
            return f"signal {sig}"
