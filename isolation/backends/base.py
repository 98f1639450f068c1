"""What every backend provides: availability, and launching one `SandboxPlan`.

The runner (`isolation.runner`) owns the pipes, the timeout and the output
collection; a backend only turns a plan into a running, killable child.
"""

from __future__ import annotations

from typing import Literal, Protocol

import attrs

from isolation.plan import SandboxPlan

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
    """A launched sandbox. `returncode` convention: >= 0 exit status, -N signal N."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the sandbox to end; raise subprocess.TimeoutExpired on timeout."""
        ...

    def send_signal(self, sig: int) -> None:
        """Deliver `sig` to the sandboxed command (no-op once it has ended)."""
        ...

    def kill(self) -> None:
        """SIGKILL the whole sandbox tree; idempotent, safe after exit."""
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
