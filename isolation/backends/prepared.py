"""Sandboxes built ahead of demand for the native backend.

Building a native sandbox (namespaces, the mount tree, pivot_root, Landlock's
ruleset, executing isolation-init) takes about 1.5 ms of kernel work here, and
none of it depends on the command: only on the policy. So after a policy has
been used once, a background thread keeps a sandbox for it built and waiting:
its isolation-init (pid 1 of fresh user, mount, pid, network, IPC, UTS and
cgroup namespaces, capabilities dropped, no_new_privs) blocks on a socket
until it receives one command with its descriptors; then it forks the worker,
which restricts itself (rlimits, Landlock, seccomp) and executes the command,
exactly as in a sandbox built on demand (whose init finds the same message
queued before the sandbox was built).

Each prepared sandbox runs one command, or none: nothing is reused. Before it
is used, the host paths bound into it are checked to be the same files as
when it was built (a bind source replaced since then means a rebuild, on
demand). Its /tmp and /work are as fresh as any. When none is ready the
sandbox is built on demand, as before: the same isolation, only slower.

Prepared sandboxes are the caller's child processes (waiting in a pid
namespace of their own, one process each) and die with the caller. At most
`KEYS` policies are kept prepared, the least recently used is let go, and a
policy unused for `IDLE_SECONDS` is let go too. In a child after `fork()` the
pool starts empty. `ISOLATION_PREPARED_SANDBOXES=0` turns this off;
`release()` lets every prepared sandbox go (for callers that account for their
child processes and descriptors; the pool refills on next use).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Hashable

import attrs

from isolation.backends.pool import BackgroundPool

ENV = "ISOLATION_PREPARED_SANDBOXES"
DEFAULT_SIZE = 1
KEYS = 4
IDLE_SECONDS = 60.0
STARTUP = 0.05  # a run this old is no longer starting
FINISHING = 0.002  # after a run has ended, time for its caller to return the result


@attrs.define
class PreparedSandbox:
    """A built sandbox waiting for its command: its init's pid and the caller's end of its socket."""

    pid: int
    control_fd: int
    sources: tuple[tuple[str, int, int], ...]  # (host path, st_dev, st_ino) of every bind source

    def fresh(self) -> bool:
        """Whether every bind source is still the file it was when the sandbox was built."""
        for path, dev, ino in self.sources:
            try:
                st = os.stat(path)
            except OSError:
                return False
            if (st.st_dev, st.st_ino) != (dev, ino):
                return False
        return True

    def close_control(self) -> None:
        if self.control_fd >= 0:
            os.close(self.control_fd)
            self.control_fd = -1

    def discard(self) -> None:
        """Let it go unused: its init exits; reap it."""
        self.close_control()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


Builder = Callable[[], "PreparedSandbox | None"]


class PreparedPool(BackgroundPool[PreparedSandbox]):
    env = ENV
    default_size = DEFAULT_SIZE
    idle_wait = IDLE_SECONDS / 2

    def __init__(self) -> None:
        super().__init__("isolation-prepare")
        # Native runs in flight (ticket -> start time): sandboxes are built only while none
        # is starting, so a build never competes with a run for the CPU; back to back, runs
        # build their own (it would cost them more to wait), idle moments prepare the next.
        self._running: dict[object, float] = {}
        self._quiet_after = 0.0

    def take(self, key: Hashable, build: Builder) -> tuple[PreparedSandbox | None, object]:
        """A prepared sandbox for `key`, now the caller's (run it or discard it), or None;
        and a ticket to pass to `done` when the run has ended. Either way, one is built for
        the next call once nothing is starting."""
        ticket = object()
        if self.size() == 0:
            return None, ticket
        evicted: list[PreparedSandbox] = []
        with self._cond:
            self._running[ticket] = time.monotonic()
            found = self._pop(key, build)
            while len(self._ready) > KEYS:  # let the least recently used policy go
                old, sandboxes = self._ready.popitem(last=False)
                self._wanted.pop(old, None)
                evicted.extend(sandboxes)
        for sandbox in evicted:
            sandbox.discard()
        return found, ticket

    def done(self, ticket: object) -> None:
        """The run `take` gave `ticket` to has ended (or failed to start)."""
        with self._cond:
            # Its caller is still returning the result: building now (Python first, with the
            # GIL) would hold that up; the build starts FINISHING later.
            self._quiet_after = time.monotonic() + FINISHING
            if self._running.pop(ticket, None) is not None and not self._running:
                self._cond.notify()

    def _hold_back(self, now: float) -> float:
        # A run older than STARTUP is a long one, not a reason to hold back.
        starting = max((start + STARTUP - now for start in self._running.values()), default=0.0)
        return max(starting, self._quiet_after - now)

    def _expire(self, now: float) -> list[PreparedSandbox]:
        idle = [k for k, (_, last) in self._wanted.items() if now - last > IDLE_SECONDS]
        gone: list[PreparedSandbox] = []
        for key in idle:
            del self._wanted[key]
            gone.extend(self._ready.pop(key, ()))
        return gone

    def dispose(self, item: PreparedSandbox) -> None:
        item.discard()

    def forget(self, item: PreparedSandbox) -> None:
        # The parent's sandboxes are the parent's children: only our copy of the socket goes.
        with contextlib.suppress(OSError):
            item.close_control()

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._running = {}


POOL = PreparedPool()


def release() -> None:
    """Let the native backend's prepared sandboxes go (see the module docstring)."""
    POOL.release()
