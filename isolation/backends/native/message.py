"""The command message: how a sandbox's isolation-init gets its command.

Every sandbox with a pid namespace is built first, with its isolation-init
waiting on a control socket (fd 3), and only then sent its command: the same
way whether it was built ahead of demand (prepared.py) or just now. The
message is one SOCK_SEQPACKET datagram: a head (magic, flags, payload length)
and the payload (rlimits, the seccomp program, executable, working directory,
argv and environment), with stdin, stdout, stderr, the write ends of the
error and status pipes, and optionally a cgroup.procs to join as SCM_RIGHTS.
A payload over `lib.ISO_COMMAND_INLINE` bytes, or over what the socket's
send buffer takes, travels as a memfd sealed against writing, growing and
shrinking instead: there is no cap of our own, execve judges argv and
environment. init.c parses it; the layout's one definition is in native/sandbox.h
(struct iso_command_msg, struct iso_command_head), read here through cffi.

All of this runs in the caller, never between clone and exec, so it is
Python: the payload of a plan is packed once (`pack`), a run only sends it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from typing import Any

from isolation._native import ffi, lib
from isolation.errors import SandboxSetupError

_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def pack(cfg: Any) -> bytes:
    """The payload for the command `cfg` describes (argv, envp, exe, cwd, rlimits; the
    seccomp filter is the sandbox's own, loaded before isolation-init, see spawn.c)."""
    argv = _strings(cfg.argv)
    envp = _strings(cfg.envp)
    n_rl = int(cfg.n_rlimits)
    rlimits = bytes(ffi.buffer(cfg.rlimits, ffi.sizeof("struct iso_rlimit") * n_rl)) if n_rl else b""
    strings = [ffi.string(cfg.exe), ffi.string(cfg.cwd), *argv, *envp]
    head = ffi.new("struct iso_command_head *", [len(argv), len(envp), n_rl, 0])
    return b"".join([bytes(ffi.buffer(head)), rlimits, *(s + b"\0" for s in strings)])


def _strings(arr: Any) -> list[bytes]:
    out = []
    i = 0
    while arr[i] != ffi.NULL:
        out.append(ffi.string(arr[i]))
        i += 1
    return out


def start(control: socket.socket, payload: bytes, stdio: tuple[int, int, int], cgroup_fd: int = -1) -> int:
    """Send a waiting init its command and return once the command was executed: the
    read end of the status pipe (init's report comes on it). Raises SandboxSetupError
    with the (step, path, errno) of a failed step (``send command``: init was gone)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
    except BaseException:
        os.close(err_r)
        os.close(err_w)
        raise
    try:
        try:
            send(control, payload, [*stdio, err_w, status_w], cgroup_fd)
        finally:
            os.close(err_w)
            os.close(status_w)
        # EOF: every writer executed (the worker, the command) or ended (init, which the status tells).
        report = _read_to_eof(err_r)
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(err_r)
    if report:
        os.close(status_r)
        raise _reported(report)
    return status_r


def _read_to_eof(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _reported(report: bytes) -> SandboxSetupError:
    """The error a (step, path, errno) record describes (`struct iso_error`)."""
    size = ffi.sizeof("struct iso_error")
    if len(report) < size:
        return failed("read setup report", errno.EIO)
    error = ffi.new("struct iso_error *")
    ffi.memmove(error, report[:size], size)
    return setup_error(error)


def failed(step: str, err: int, path: str = "") -> SandboxSetupError:
    """A failed setup step, as every native error reads: (step, path, errno)."""
    where = f" {path}" if path else ""
    return SandboxSetupError(
        f"native sandbox setup failed at {step}{where}: {os.strerror(err)} (errno {err})",
        step=step,
        path=path,
        errno=err,
    )


def setup_error(error: Any) -> SandboxSetupError:
    """The exception for a `struct iso_error` C filled in."""
    step = ffi.string(error.step).decode(errors="replace")
    path = ffi.string(error.path).decode(errors="replace")
    return failed(step, int(error.err), path)


def send(control: socket.socket, payload: bytes, fds: list[int], cgroup_fd: int = -1) -> None:
    """Send one command with its descriptors (stdin, stdout, stderr, error pipe, status pipe)."""
    flags = 0
    fds = list(fds)
    if cgroup_fd >= 0:
        flags |= lib.ISO_CMD_CGROUP
        fds.append(cgroup_fd)
    memfd = _sealed(payload) if len(payload) > lib.ISO_COMMAND_INLINE else -1
    try:
        while True:
            head = ffi.new(
                "struct iso_command_msg *",
                [lib.ISO_COMMAND_MAGIC, flags | (lib.ISO_CMD_MEMFD if memfd >= 0 else 0), len(payload)],
            )
            parts = [bytes(ffi.buffer(head))]
            if memfd < 0:
                parts.append(payload)
            try:
                sent = control.sendmsg(
                    parts, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _ints(fds, memfd))], socket.MSG_NOSIGNAL
                )
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE and memfd < 0:  # a send buffer too small for it: the memfd
                    memfd = _sealed(payload)
                    continue
                raise failed("send command", exc.errno or errno.EIO) from None
            if sent != sum(map(len, parts)):
                raise failed("send command", errno.EIO)
            return
    finally:
        if memfd >= 0:
            os.close(memfd)


def _ints(fds: list[int], memfd: int) -> bytes:
    return struct.pack(f"={len(fds) + (memfd >= 0)}i", *fds, *([memfd] if memfd >= 0 else []))


def _sealed(payload: bytes) -> int:
    try:
        fd = os.memfd_create("isolation-command", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError as exc:
        raise failed("memfd_create", exc.errno or errno.EIO) from None
    try:
        step = "write command"
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        step = "seal command"
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except OSError as exc:
        os.close(fd)
        raise failed(step, exc.errno or errno.EIO) from None
    return fd
