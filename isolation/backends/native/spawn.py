"""Building a sandbox in C (`iso_spawn`, the one call that clones) and starting its command.

A sandbox with a pid namespace is always built the same way, whether ahead
of demand (prepared.py) or for the run at hand: C builds it up to its pid 1,
isolation-init, which then waits on a control socket (`WaitingInit`); the
command follows as one message (message.py). Without a pid namespace (the
host layout) C executes the command itself. A failed step comes back as
(step, path, errno): a `SandboxSetupError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
from typing import Any

import attrs

from isolation._native import ffi, lib
from isolation.backends.native import message
from isolation.backends.native.spec import Shape, Spec
from isolation.errors import IsolationUnavailable

# pid 1 of every sandbox with a pid namespace (native/init.c, built by setup.py).
INIT_PROGRAM = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "_isolation_init"
)


@attrs.frozen
class Started:
    """A sandbox whose command was executed: its init (or, without a pid namespace,
    the command) and the read end of its status pipe."""

    pid: int
    status_fd: int


@attrs.define
class WaitingInit:
    """A built sandbox whose isolation-init waits for its command on `control`."""

    pid: int
    control: socket.socket

    def start(self, spec: Spec, cfg: Any) -> Started:
        """Send the command with this run's descriptors (`cfg`: the run's copy); once it was
        executed, the sandbox is the caller's to watch. On failure the sandbox is
        discarded (it is used up either way)."""
        stdio = (cfg.stdio[0], cfg.stdio[1], cfg.stdio[2])
        try:
            status_fd = message.start(self.control, spec.payload, stdio, int(cfg.cgroup_procs_fd))
        except BaseException:
            self.discard()
            raise
        self.control.close()
        return Started(self.pid, status_fd)

    def discard(self) -> None:
        """Let it go unused: its init exits; reap it."""
        self.control.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def open_init() -> int:
    try:
        return os.open(INIT_PROGRAM, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise IsolationUnavailable(
            f"the native backend's init program {INIT_PROGRAM} is missing ({exc.strerror}); "
            "reinstall with `pip install .`"
        ) from None


def spawn(cfg: Any) -> Started:
    """`iso_spawn`: build the sandbox `cfg` describes (with its isolation-init when it has a
    pid namespace, waiting on `cfg.control_fd`), or without one execute the command.
    Raises SandboxSetupError; nothing of it is left then."""
    out = ffi.new("struct iso_started *")
    # Where C keeps the bind sources' descriptors while it builds: one per mount.
    source_fds = ffi.new("int[]", max(int(cfg.n_mounts), 1))
    cfg.source_fds = source_fds
    init_fd = -1
    try:
        if cfg.flags & lib.ISO_F_PIDNS:
            init_fd = cfg.init_fd = open_init()
        rc = lib.iso_spawn(cfg, out)
    finally:
        if init_fd >= 0:
            os.close(init_fd)
            cfg.init_fd = -1
    if rc != 0:
        raise message.setup_error(out.error)
    return Started(int(out.pid), int(out.status_fd))


def build(shape: Shape) -> WaitingInit:
    """A sandbox of `shape` up to its isolation-init, which waits for a command."""
    cfg = ffi.new("struct iso_config *")
    shape.fill(cfg)
    cfg.flags = shape.flags | lib.ISO_F_PREPARED
    try:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    except OSError as exc:
        raise message.failed("socketpair", exc.errno or errno.EIO) from None
    try:
        cfg.control_fd = theirs.fileno()
        started = spawn(cfg)
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    os.close(started.status_fd)  # its status pipe comes with its command
    return WaitingInit(started.pid, mine)


def start(spec: Spec, cfg: Any) -> Started:
    """Build `spec`'s sandbox now and start its command in it (`cfg`: this run's copy)."""
    if not spec.shape.preparable:  # the host layout: C executes the command itself
        return spawn(cfg)
    waiting = build(spec.shape)
    return waiting.start(spec, cfg)
