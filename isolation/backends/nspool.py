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

import contextlib
import functools
import os

from isolation._native import ffi, lib
from isolation.backends.pool import BackgroundPool

ENV = "ISOLATION_PREPARED_NAMESPACES"
FLAGS = lib.ISO_F_USERNS | lib.ISO_F_NETNS | lib.ISO_F_IPCNS  # the namespaces a set can hold
DEFAULT_SIZE = 2

# (uid inside, gid inside, uid outside, gid outside, flags)
Key = tuple[int, int, int, int, int]
Fds = tuple[int, int, int]


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


class NamespacePool(BackgroundPool[Fds]):
    env = ENV
    default_size = DEFAULT_SIZE

    def take(self, key: Key) -> Fds | None:
        """A prepared set for `key`, now the caller's to close; None when none is ready."""
        if self.size() == 0:
            return None
        with self._cond:
            return self._pop(key, functools.partial(prepare, key))

    def dispose(self, item: Fds) -> None:
        close_set(item)

    def forget(self, item: Fds) -> None:
        for fd in item:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


POOL = NamespacePool("isolation-prepare-ns")


def release() -> None:
    """Close the native backend's prepared namespaces (see the module docstring)."""
    POOL.release()
