"""Building a sandbox in C (`iso_spawn`): the one call that clones, and its errors.

C does the clone-to-execve choreography and reports a failed step as
(step, path, errno); here that becomes a `SandboxSetupError`. With a pid
namespace the sandbox's pid 1 is isolation-init, a static program the
caller opens here and the new sandbox executes before anything else.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from isolation._native import ffi, lib
from isolation.errors import IsolationUnavailable, SandboxSetupError

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


def open_init() -> int:
    try:
        return os.open(INIT_PROGRAM, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise IsolationUnavailable(
            f"the native backend's init program {INIT_PROGRAM} is missing ({exc.strerror}); "
            "reinstall with `pip install .`"
        ) from None


def setup_error(error: Any) -> SandboxSetupError:
    """The exception for a `struct iso_error` C filled in."""
    step = ffi.string(error.step).decode(errors="replace")
    path = ffi.string(error.path).decode(errors="replace")
    err = int(error.err)
    where = f" {path}" if path else ""
    return SandboxSetupError(
        f"native sandbox setup failed at {step}{where}: {os.strerror(err)} (errno {err})",
        step=step,
        path=path,
        errno=err,
    )


def spawn(cfg: Any) -> Started:
    """Build the sandbox `cfg` describes (with its isolation-init when it has a pid
    namespace) and start its command, or with ISO_F_PREPARED leave init waiting for
    one on `cfg.control_fd`. Raises SandboxSetupError; nothing of it is left then."""
    out = ffi.new("struct iso_started *")
    # Where C keeps the bind sources' descriptors while it builds: one per mount.
    fds = ffi.new("int[]", max(int(cfg.n_mounts), 1))
    cfg.scratch = fds
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
        raise setup_error(out.error)
    return Started(int(out.pid), int(out.status_fd))
