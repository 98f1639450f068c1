"""Namespaces prepared ahead of demand for the native backend.

Creating a network namespace is the most expensive step of a native sandbox
(about 0.6 ms of kernel work here, an IPC namespace another 0.1 ms), and it
does not depend on the policy. So a background thread keeps a few sets of
fresh user + network + IPC namespaces ready (the user namespace already maps
65534 to the caller, the network namespace has loopback up), and a sandbox
joins one set instead of creating it while the caller waits.

Each set is used by exactly one sandbox, and its descriptors are closed once
that sandbox has joined it (or failed to start): sandboxes never share a
namespace. No process stays in a prepared set; it lives only through the
pool's descriptors (three per set, close-on-exec). When the pool is empty
the sandbox creates its namespaces itself, as before: the same isolation,
only slower. In a child after `fork()` the pool starts empty (the parent's
sets stay the parent's).

`ISOLATION_PREPARED_NAMESPACES=0` in the environment turns the pool off;
`release()` closes every prepared set and stops the thread (it restarts on
the next sandbox), for callers that account for their descriptors.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading

from isolation._native import ffi, lib

ENV = "ISOLATION_PREPARED_NAMESPACES"
FLAGS = lib.ISO_F_USERNS | lib.ISO_F_NETNS | lib.ISO_F_IPCNS  # the namespaces a set can hold
DEFAULT_SIZE = 2

# (uid inside, gid inside, uid outside, gid outside, flags)
Key = tuple[int, int, int, int, int]
Fds = tuple[int, int, int]


def _size() -> int:
    try:
        return max(0, int(os.environ.get(ENV, DEFAULT_SIZE)))
    except ValueError:
        return DEFAULT_SIZE


def prepare(key: Key) -> Fds | None:
    """One fresh set for `key` (None if the kernel refused: the sandbox will say why itself)."""
    cfg = ffi.new("struct iso_config *")
    cfg.uid_inside, cfg.gid_inside, cfg.uid_outside, cfg.gid_outside, cfg.flags = key
    fds = ffi.new("int[3]")
    err = ffi.new("struct iso_error *")
    if lib.iso_prepare_namespaces(cfg, fds, err) != 0:
        return None
    return int(fds[0]), int(fds[1]), int(fds[2])


def close_set(fds: Fds) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


class NamespacePool:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: dict[Key, collections.deque[Fds]] = {}
        self._wanted: dict[Key, int] = {}
        self._thread: threading.Thread | None = None
        self._generation = 0  # a refill thread runs while its generation is current
        # Held while a set is made and recorded: fork() waits for it, so a child
        # never inherits descriptors of a set the pool has not recorded yet.
        self._making = threading.Lock()

    def take(self, key: Key) -> Fds | None:
        """A prepared set for `key`, now the caller's to close; None when none is ready."""
        size = _size()
        if size == 0:
            return None
        with self._cond:
            ready = self._ready.get(key)
            fds = ready.popleft() if ready else None
            self._wanted[key] = size
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._refill, args=(self._generation,), name="isolation-prepare-ns", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return fds

    def _missing(self) -> Key | None:
        for key, size in self._wanted.items():
            if len(self._ready.get(key, ())) < size:
                return key
        return None

    def _refill(self, generation: int) -> None:
        while True:
            with self._cond:
                key = None
                while self._generation == generation and (key := self._missing()) is None:
                    self._cond.wait()
                if self._generation != generation or key is None:
                    return
            with self._making:
                fds = prepare(key)  # outside the condition's lock; cffi releases the GIL meanwhile
                with self._cond:
                    if fds is None:  # the kernel refused: stop asking for this key until the next take
                        self._wanted.pop(key, None)
                    elif self._generation != generation:
                        close_set(fds)
                    else:
                        self._ready.setdefault(key, collections.deque()).append(fds)

    def release(self) -> None:
        """Close every prepared set and stop the thread (a later take starts it again)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._generation += 1
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            for ready in self._ready.values():
                while ready:
                    close_set(ready.popleft())
            self._ready.clear()
            self._wanted.clear()

    def _before_fork(self) -> None:
        self._making.acquire()

    def _after_fork_in_parent(self) -> None:
        self._making.release()

    def _after_fork_in_child(self) -> None:
        # The parent's sets must not be used by two processes; the thread did not survive the fork.
        self._making = threading.Lock()
        self._cond = threading.Condition()
        for ready in self._ready.values():
            for fds in ready:
                for fd in fds:
                    if fd >= 0:
                        with contextlib.suppress(OSError):
                            os.close(fd)
        self._ready = {}
        self._wanted = {}
        self._thread = None
        self._generation += 1


POOL = NamespacePool()
os.register_at_fork(
    before=POOL._before_fork, after_in_parent=POOL._after_fork_in_parent, after_in_child=POOL._after_fork_in_child
)


def release() -> None:
    """Close the native backend's prepared namespaces (see the module docstring)."""
    POOL.release()
