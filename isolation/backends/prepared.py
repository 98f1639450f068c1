"""Sandboxes built ahead of demand for the native backend.

Building a native sandbox (namespaces, the mount tree, pivot_root, Landlock's
ruleset, executing isolation-init) takes about 1.5 ms of kernel work here, and
none of it depends on the command: only on the policy. So after a policy has
been used once, a background thread keeps a sandbox for it built and waiting:
its isolation-init (pid 1 of fresh user, mount, pid, network, IPC, UTS and
cgroup namespaces, capabilities dropped, no_new_privs) blocks on a socket
until it receives one command with its descriptors; then it forks the worker,
which restricts itself (rlimits, Landlock, seccomp) and executes the command,
exactly as in a sandbox built on demand.

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

import collections
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Hashable

import attrs

ENV = "ISOLATION_PREPARED_SANDBOXES"
DEFAULT_SIZE = 1
KEYS = 4
IDLE_SECONDS = 60.0
STARTUP = 0.05  # a run this old is no longer starting


def _size() -> int:
    try:
        return max(0, int(os.environ.get(ENV, DEFAULT_SIZE)))
    except ValueError:
        return DEFAULT_SIZE


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


class PreparedPool:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: collections.OrderedDict[Hashable, collections.deque[PreparedSandbox]] = collections.OrderedDict()
        self._wanted: dict[Hashable, tuple[Builder, float]] = {}  # key -> (builder, last use)
        self._thread: threading.Thread | None = None
        self._generation = 0
        # Native runs in flight (ticket -> start time): sandboxes are built only while none
        # is starting, so a build never competes with a run for the CPU; back to back, runs
        # build their own (it would cost them more to wait), idle moments prepare the next.
        self._running: dict[object, float] = {}
        # Held while a sandbox is built and recorded: fork() waits for it.
        self._making = threading.Lock()

    def take(self, key: Hashable, build: Builder) -> tuple[PreparedSandbox | None, object]:
        """A prepared sandbox for `key`, now the caller's (run it or discard it), or None;
        and a ticket to pass to `done` when the run has ended. Either way, one is built for
        the next call once nothing is starting."""
        ticket = object()
        size = _size()
        if size == 0:
            return None, ticket
        evicted: list[PreparedSandbox] = []
        with self._cond:
            self._running[ticket] = time.monotonic()
            ready = self._ready.get(key)
            found = ready.popleft() if ready else None
            self._wanted[key] = (build, time.monotonic())
            self._ready.setdefault(key, collections.deque())
            self._ready.move_to_end(key)
            while len(self._ready) > KEYS:  # let the least recently used policy go
                old, sandboxes = self._ready.popitem(last=False)
                self._wanted.pop(old, None)
                evicted.extend(sandboxes)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._refill, args=(self._generation,), name="isolation-prepare", daemon=True
                )
                self._thread.start()
            self._cond.notify()  # the thread works out when it may build the next one
        for sandbox in evicted:
            sandbox.discard()
        return found, ticket

    def done(self, ticket: object) -> None:
        """The run `take` gave `ticket` to has ended (or failed to start)."""
        with self._cond:
            if self._running.pop(ticket, None) is not None and not self._running:
                self._cond.notify()

    def _starting_until(self, now: float) -> float:
        """When no run will count as starting any more (now if none does); a run older
        than STARTUP is a long one, not a reason to hold back."""
        return max((start + STARTUP for start in self._running.values()), default=now)

    def _next(self) -> tuple[Hashable, Builder] | None:
        size = _size()
        for key, (build, _) in self._wanted.items():
            if len(self._ready.get(key, ())) < size:
                return key, build
        return None

    def _expire(self) -> list[PreparedSandbox]:
        now = time.monotonic()
        idle = [k for k, (_, last) in self._wanted.items() if now - last > IDLE_SECONDS]
        gone: list[PreparedSandbox] = []
        for key in idle:
            del self._wanted[key]
            gone.extend(self._ready.pop(key, ()))
        return gone

    def _refill(self, generation: int) -> None:
        while True:
            with self._cond:
                job = None
                while self._generation == generation:
                    job = self._next()
                    now = time.monotonic()
                    until = self._starting_until(now)
                    if job is not None and until <= now:
                        break
                    self._cond.wait(IDLE_SECONDS / 2 if job is None else until - now)
                    gone = self._expire()
                    if gone:
                        self._cond.release()
                        try:
                            for sandbox in gone:
                                sandbox.discard()
                        finally:
                            self._cond.acquire()
                if self._generation != generation or job is None:
                    return
            key, build = job
            unused: PreparedSandbox | None = None
            with self._making:
                try:
                    built = build()  # outside the condition's lock; cffi releases the GIL meanwhile
                except Exception:  # noqa: BLE001 - e.g. out of descriptors: a run built on demand will say
                    built = None
                with self._cond:
                    if built is None:  # it could not be built: stop until the next take says why
                        self._wanted.pop(key, None)
                    elif self._generation == generation and key in self._wanted:
                        self._ready.setdefault(key, collections.deque()).append(built)
                    else:
                        unused = built
            if unused is not None:
                unused.discard()

    def release(self) -> None:
        """Let every prepared sandbox go and stop the thread (a later take starts it again)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._generation += 1
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            gone = [s for ready in self._ready.values() for s in ready]
            self._ready.clear()
            self._wanted.clear()
        for sandbox in gone:
            sandbox.discard()

    def _before_fork(self) -> None:
        self._making.acquire()

    def _after_fork_in_parent(self) -> None:
        self._making.release()

    def _after_fork_in_child(self) -> None:
        # The parent's sandboxes are the parent's children: only our copies of their sockets go.
        self._making = threading.Lock()
        self._cond = threading.Condition()
        for ready in self._ready.values():
            for sandbox in ready:
                with contextlib.suppress(OSError):
                    sandbox.close_control()
        self._ready = collections.OrderedDict()
        self._wanted = {}
        self._running = {}
        self._thread = None
        self._generation += 1


POOL = PreparedPool()
os.register_at_fork(
    before=POOL._before_fork, after_in_parent=POOL._after_fork_in_parent, after_in_child=POOL._after_fork_in_child
)


def release() -> None:
    """Let the native backend's prepared sandboxes go (see the module docstring)."""
    POOL.release()
