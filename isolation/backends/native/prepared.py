"""Sandboxes built ahead of demand: the native backend's fast path, in one module.

Building a native sandbox (namespaces, the mount tree, pivot_root, Landlock's
ruleset, executing isolation-init) is about 1.5 ms of kernel work here, and
none of it depends on the command, only on the sandbox's `Shape`. So once a
shape has been used, a background thread keeps one sandbox of it built and
waiting: its isolation-init (pid 1 of fresh user, mount, pid, network, IPC,
UTS and cgroup namespaces, capabilities dropped, no_new_privs) blocks on a
socket until it receives one command with its descriptors; then it forks the
worker, which restricts itself (rlimits, Landlock, seccomp) and executes the
command, exactly as in a sandbox built on demand (whose init gets the same
message).

`try_start` is the whole interface the launcher uses: a started command, or
None when nothing is ready (the launcher then builds on demand: the same
isolation, only slower). Each prepared sandbox runs one command, or none:
nothing is reused. A shape includes what each bind source is (device and
inode): a sandbox is built only while its sources are still those files, and
a source replaced since (each run checks, see isolation.resolution) is a new
shape, so a sandbox built for the old file is never used. Its /tmp and /work
are as fresh as any.

Prepared sandboxes are the caller's child processes (waiting in a pid
namespace of their own, one process each) and die with the caller. At most
`SHAPES` shapes are kept prepared, the least recently used is let go, and a
shape unused for `IDLE_SECONDS` is let go too. The thread builds while no
native run is starting or running (`run_started`; a run older than `STARTUP`
does not hold it back), starting the moment the last one's end is known: a
build alongside a run slowed that run by about 2 ms here (two CPUs, and the
kernel's namespace locks), so a run with idle time before it finds its
sandbox ready, and back to back about half of the runs do. In a child
after `fork()` the pool starts empty. `ISOLATION_PREPARED_SANDBOXES=0`, read
at import, or `configure(0)` turns this off; `release()` lets every prepared
sandbox go (for callers that account for their child processes and
descriptors; the pool refills on next use).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from isolation.backends.native.spawn import Started, WaitingInit, build
from isolation.backends.native.spec import Shape, Spec
from isolation.errors import SandboxSetupError

ENV = "ISOLATION_PREPARED_SANDBOXES"
SHAPES = 4
IDLE_SECONDS = 60.0
STARTUP = 0.05  # a run this old is a long one: the thread builds alongside it


def _build(shape: Shape) -> WaitingInit | None:
    """A sandbox of `shape` kept for a later command (run by the pool's thread);
    None when it cannot be built (a run on demand will say why)."""
    for path, dev, ino in shape.sources or ():  # checked first: the build opens them right after
        try:
            st = os.stat(path)
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != (dev, ino):  # replaced since the shape was described
            return None
    try:
        return build(shape)
    except (OSError, SandboxSetupError):
        return None


def try_start(spec: Spec, cfg: Any) -> Started | None:
    """Start `spec`'s command (`cfg`: this run's copy) in a sandbox prepared for its shape,
    or return None when none is ready (one is then built for the next run, once the
    caller is quiet). Raises SandboxSetupError when the command could not be started."""
    if not spec.shape.preparable:
        return None
    waiting = POOL.take(spec.shape)
    if waiting is None:
        return None
    try:
        return waiting.start(spec, cfg)
    except SandboxSetupError as exc:
        if exc.step == "send command":  # it was gone before it got the command (killed from outside)
            return None
        raise


def _nothing() -> None:
    pass


def _size_from_env() -> int:
    try:
        return max(0, int(os.environ.get(ENV, "1")))
    except ValueError:
        return 1


class PreparedPool:
    """Per shape, up to `size` sandboxes kept ready by a daemon thread."""

    def __init__(self) -> None:
        self.size = _size_from_env()
        self._cond = threading.Condition()
        self._ready: collections.OrderedDict[Shape, collections.deque[WaitingInit]] = collections.OrderedDict()
        self._wanted: dict[Shape, float] = {}  # shape -> when it was last asked for
        self._thread: threading.Thread | None = None
        self._generation = 0  # a thread runs while its generation is current
        self._running: dict[object, float] = {}  # runs started and not ended: token -> start
        # Held while a sandbox is built and recorded: fork() waits for it, so a child
        # never inherits descriptors of a sandbox the pool has not recorded yet.
        self._building = threading.Lock()
        os.register_at_fork(
            before=self._building.acquire,
            after_in_parent=self._building.release,
            after_in_child=self._after_fork_in_child,
        )

    def take(self, shape: Shape) -> WaitingInit | None:
        """A ready sandbox of `shape`, now the caller's (run it or discard it), or None.
        Either way `shape` is wanted from now on, and a run is starting."""
        if self.size == 0:
            return None
        evicted: list[WaitingInit] = []
        with self._cond:
            now = time.monotonic()
            ready = self._ready.get(shape)
            found = ready.popleft() if ready else None
            self._wanted[shape] = now
            self._ready.setdefault(shape, collections.deque())
            self._ready.move_to_end(shape)
            while len(self._ready) > SHAPES:  # let the least recently used shape go
                old, sandboxes = self._ready.popitem(last=False)
                self._wanted.pop(old, None)
                evicted.extend(sandboxes)
            self._start_thread()
            self._cond.notify()  # the thread works out when it may build the next one
        for sandbox in evicted:
            sandbox.discard()
        return found

    def run_started(self) -> Callable[[], None]:
        """Note a native run starting; call what this returns once its end is known.
        The thread builds nothing while a run younger than `STARTUP` has not ended:
        a build would compete with it for the CPU (and the kernel's namespace locks)."""
        if self.size == 0:
            return _nothing
        token = object()
        with self._cond:
            self._running[token] = time.monotonic()

        def ended() -> None:
            with self._cond:
                if self._running.pop(token, None) is not None and not self._running:
                    self._cond.notify_all()

        return ended

    def waiting(self) -> list[WaitingInit]:
        """The sandboxes ready now (a snapshot; they stay in the pool)."""
        with self._cond:
            return [sandbox for ready in self._ready.values() for sandbox in ready]

    def wait_ready(self, timeout: float = 5.0) -> WaitingInit | None:
        """Block until some sandbox is ready (for tests and warm-up); it stays in the pool."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ready in self._ready.values():
                    if ready:
                        return ready[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def _start_thread(self) -> None:
        if self._thread is not None:
            return
        thread = threading.Thread(target=self._refill, args=(self._generation,), name="isolation-prepare", daemon=True)
        try:
            thread.start()
            self._thread = thread
        except RuntimeError:  # no thread to be had (RLIMIT_NPROC): nothing ahead of demand, runs build their own
            pass

    def _next(self, now: float) -> tuple[Shape | None, float, list[WaitingInit]]:
        """With the lock held: what to build (if anything), how long to wait first, and what expired."""
        gone: list[WaitingInit] = []
        for shape in [s for s, last in self._wanted.items() if now - last > IDLE_SECONDS]:
            del self._wanted[shape]
            gone.extend(self._ready.pop(shape, ()))
        for shape in self._wanted:
            if len(self._ready.get(shape, ())) < self.size:
                # A run older than STARTUP is a long one, not a reason to hold back.
                wait = max((start + STARTUP - now for start in self._running.values()), default=0.0)
                return shape, max(wait, 0.0), gone
        return None, IDLE_SECONDS / 2, gone

    def _refill(self, generation: int) -> None:
        while True:
            with self._cond:
                if self._generation != generation:
                    return
                shape, wait, gone = self._next(time.monotonic())
                if not gone and (shape is None or wait > 0):
                    self._cond.wait(wait)
                    continue
            for sandbox in gone:
                sandbox.discard()
            if shape is None:
                continue
            unused: WaitingInit | None = None
            with self._building:
                try:
                    made = _build(shape)  # outside the condition's lock; cffi releases the GIL meanwhile
                except Exception:  # noqa: BLE001 - e.g. out of descriptors: a run on demand will say
                    made = None
                with self._cond:
                    if made is None:  # it could not be built: stop until the next take asks again
                        self._wanted.pop(shape, None)
                    elif self._generation == generation and shape in self._wanted:
                        self._ready.setdefault(shape, collections.deque()).append(made)
                        self._cond.notify_all()
                    else:
                        unused = made
            if unused is not None:
                unused.discard()

    def release(self) -> None:
        """Let every ready sandbox go and stop the thread (a later take starts it again)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._generation += 1
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            gone = [sandbox for ready in self._ready.values() for sandbox in ready]
            self._ready.clear()
            self._wanted.clear()
        for sandbox in gone:
            sandbox.discard()

    def _after_fork_in_child(self) -> None:
        # The parent's sandboxes are the parent's children: only our copies of their sockets go.
        self._building = threading.Lock()
        self._cond = threading.Condition()
        for ready in self._ready.values():
            for sandbox in ready:
                with contextlib.suppress(OSError):
                    sandbox.control.close()
        self._ready = collections.OrderedDict()
        self._wanted = {}
        self._running = {}
        self._thread = None
        self._generation += 1


POOL = PreparedPool()


def configure(size: int) -> None:
    """How many sandboxes to keep ready per shape (0: none, and let the ready ones go)."""
    POOL.size = max(0, size)
    if POOL.size == 0:
        POOL.release()


def wait_ready(timeout: float = 5.0) -> WaitingInit | None:
    """A sandbox waiting in the pool, once there is one (None after `timeout`)."""
    return POOL.wait_ready(timeout)


def release() -> None:
    """Let the native backend's prepared sandboxes go (see the module docstring)."""
    POOL.release()
