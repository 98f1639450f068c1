"""What every backend provides: availability, and launching one `SandboxPlan`.

The runner (`isolation.runner`) owns the pipes, the timeout and the output
collection; a backend only turns a plan into a running, killable child.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import attrs

from isolation.plan import SandboxPlan
from isolation.result import Usage

Enforcement = Literal["strict", "best_effort"]


@attrs.frozen
class Availability:
    ok: bool
    reason: str = ""


@attrs.frozen
class Stdio:
    """File descriptors that become 0, 1 and 2 inside the sandbox (owned by the caller)."""

    stdin: int
    stdout: int
    stderr: int


class Child(Protocol):
    """A launched sandbox: everything the runner asks of it, and nothing else.

    `poll`/`wait` return the exit status as the backend encodes it; `term_signal`
    decodes it. Once the end is known the child has reaped what it must; what
    follows (handing a process to a background reaper, a pool's bookkeeping) waits
    for `release()`, which the owner calls once it has collected the result.
    """

    @property
    def pid(self) -> int: ...

    @property
    def exit_fd(self) -> int:
        """A descriptor that polls readable once the end is known (poll() then returns
        it); -1 once the end has been seen and the descriptor closed. The child owns it."""
        ...

    def poll(self) -> int | None:
        """The exit status, or None while it runs; never blocks."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the sandbox to end; raise subprocess.TimeoutExpired on timeout."""
        ...

    def send_signal(self, sig: int) -> None:
        """Deliver `sig` to the sandboxed command (no-op once it has ended)."""
        ...

    def kill(self) -> None:
        """SIGKILL the whole sandbox tree; idempotent, safe after exit."""
        ...

    def term_signal(self, status: int) -> int | None:
        """The signal that ended the command, read from `status` as poll()/wait()
        returned it; None for a normal exit."""
        ...

    def usage(self) -> Usage | None:
        """CPU time and peak RSS, once ended; None when the backend could not measure them."""
        ...

    def limits_hit(self) -> tuple[str, ...]:
        """Limits the sandbox ran into that only the backend sees (e.g. max_pids), once ended."""
        ...

    def release(self) -> None:
        """Let go of what follows the end, once it has come (no-op before); idempotent.
        Dropping the child without it releases as well (at garbage collection)."""
        ...


@attrs.frozen
class Launched:
    child: Child
    enforced: tuple[str, ...]
    missing: tuple[str, ...] = ()


class Backend(Protocol):
    name: str

    def availability(self) -> Availability: ...

    def launch(self, plan: SandboxPlan, stdio: Stdio, *, enforcement: Enforcement = "strict") -> Launched:
        """Start `plan`; raise IsolationError (never run unsandboxed) if it cannot be enforced."""
        ...

    def launcher(self, plan: SandboxPlan, enforcement: Enforcement) -> Callable[[Stdio], Launched]:
        """`launch` for `plan`, with what does not depend on the run worked out once: the
        runner keeps it with the call's resolution (isolation.resolution)."""
        ...
