"""The I/O loop between the caller and a running sandbox: stdin fed or relayed, stdout and
stderr kept in memory or relayed live under one byte limit, until the sandbox has ended."""

from __future__ import annotations

import contextlib
import math
import os
import select
import stat
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from isolation.sandbox import Sandbox

# After the command has exited, how long to keep reading output that a
# straggler (only possible without a pid namespace) still holds open.
DRAIN_GRACE = 1.0
CHUNK = 65536


@attrs.frozen
class Relay:
    """stdin=, stdout= or stderr= of `run`: the runner copies between this descriptor of the
    caller and a pipe of the sandbox, so the sandbox never holds the caller's own file.

    Output is relayed live, bounded by `limits.max_output` as captured output is. Input is
    read from `fd` as it arrives and relayed until the command ends (what it did not read is
    dropped). Use it for a terminal or any file the command must not get a descriptor of:
    whoever holds a descriptor can change the file's mode, owner and times (fchmod, fchown,
    futimens) wherever its owner is the sandbox's user on the host.
    """

    fd: int


@attrs.define
class Sink:
    """One output stream of a sandbox being drained: kept in memory, or relayed to `to`."""

    name: str
    file: IO[bytes]  # the runner's read end
    limit: int | None
    to: int = -1  # the caller's descriptor, or -1: keep in memory
    kill_past: bool = False  # passing `limit` kills the sandbox (a reply that can no longer be valid)
    kept: int = 0
    dropped: int = 0
    chunks: list[bytes] = attrs.Factory(list)
    pending: memoryview = memoryview(b"")
    reading: bool = True
    step: int = CHUNK  # bytes per write to `to` that cannot block once it polls writable

    def take(self, data: bytes) -> bool:
        """Keep or relay what the limit allows, drop the rest; True when it was passed just now."""
        room = len(data) if self.limit is None else max(0, self.limit - self.kept)
        kept = data[:room] if room < len(data) else data
        if kept:
            self.kept += len(kept)
            if self.to >= 0:
                self.pending = memoryview(kept)
            else:
                self.chunks.append(kept)
        passed = self.dropped == 0 and len(kept) < len(data)
        self.dropped += len(data) - len(kept)
        return passed

    def stop(self) -> None:
        """Stop draining: the sandbox's next write to this stream fails (EPIPE/SIGPIPE), as
        its write to a closed pipe of the caller would have."""
        self.reading = False
        self.pending = memoryview(b"")
        with contextlib.suppress(OSError):
            self.file.close()


def write_step(fd: int) -> int:
    """Bytes one write to `fd` may carry without blocking once poll() calls it writable:
    PIPE_BUF for a pipe, socket or terminal (the caller's own descriptors stay blocking:
    their O_NONBLOCK flag is shared with whoever else holds them)."""
    try:
        return CHUNK if stat.S_ISREG(os.fstat(fd).st_mode) else select.PIPE_BUF
    except OSError:
        return select.PIPE_BUF


def pump(
    sb: Sandbox, feed: bytes | Relay | None, sinks: Sequence[Sink], deadline: float | None, signals_fd: int = -1
) -> bool:
    """Move data between the caller and the sandbox until it has ended and its output is drained.

    `feed` goes to stdin: bytes, or a caller descriptor relayed until the end. Each sink
    keeps or relays its stream (see Sink). At the deadline the sandbox is killed (the
    return value says so) and what it wrote is still drained. Output written after the
    end is read for at most `DRAIN_GRACE` seconds (only a process that escaped the
    sandbox's pid namespace, i.e. under backend none, can hold a pipe that long).
    Signal numbers arriving on `signals_fd` (a signal.set_wakeup_fd pipe) are sent to
    the command; after its end they give up on the streams a caller is not reading.
    """
    for sink in sinks:
        os.set_blocking(sink.file.fileno(), False)
        if sink.to >= 0:
            sink.step = write_step(sink.to)
    pending = memoryview(feed if isinstance(feed, bytes) else b"")
    source = feed.fd if isinstance(feed, Relay) else -1  # the caller's descriptor relayed to stdin
    stdin_fd = -1 if sb.stdin is None or sb.stdin.closed else sb.stdin.fileno()
    if stdin_fd >= 0 and not pending and source < 0:
        sb._close_stdin()
        stdin_fd = -1
    if stdin_fd >= 0:
        os.set_blocking(stdin_fd, False)
    timed_out = False
    exited_at: float | None = None if sb.returncode is None else time.monotonic()
    # Readable once the backend knows the sandbox's end (its own report, or the exit).
    exit_fd = sb._child.exit_fd
    if exited_at is None and (exit_fd < 0 or sb.returncode is not None):
        sb.poll()  # another thread saw the end meanwhile and closed that descriptor
        exited_at = time.monotonic()
    while True:
        if exited_at is not None and stdin_fd >= 0:  # nobody reads stdin any more
            sb._close_stdin()
            stdin_fd = source = -1
        if exited_at is not None and not any(s.reading or s.pending for s in sinks):
            break
        wanted: list[tuple[int, int]] = []  # (descriptor, what it is waited for)
        if exited_at is None:
            wanted.append((exit_fd, select.POLLIN))
        if signals_fd >= 0:
            wanted.append((signals_fd, select.POLLIN))
        if stdin_fd >= 0 and pending:
            wanted.append((stdin_fd, select.POLLOUT))
        elif stdin_fd >= 0 and source >= 0:
            wanted.append((source, select.POLLIN))
        for sink in sinks:
            if sink.pending:
                wanted.append((sink.to, select.POLLOUT))
            elif sink.reading:
                wanted.append((sink.file.fileno(), select.POLLIN))
        events: dict[int, int] = {}
        for fd, event in wanted:
            events[fd] = events.get(fd, 0) | event
        limit = None if exited_at is not None else deadline
        if exited_at is not None and any(s.reading for s in sinks):
            limit = exited_at + DRAIN_GRACE
        wait_ms = None
        if limit is not None:
            now = time.monotonic()
            if now >= limit:
                if exited_at is None:  # the deadline: kill, then drain what it wrote
                    timed_out = True
                    deadline = None
                    sb.kill()
                else:  # the grace after the end is over: stop reading, relay what is held
                    for sink in sinks:
                        if sink.reading:
                            sink.reading = False
                continue
            wait_ms = math.ceil((limit - now) * 1000)
        poller = select.poll()  # no descriptor of its own, unlike epoll
        for fd, event in events.items():
            poller.register(fd, event)
        ready = poller.poll(wait_ms)
        for fd, _ in ready:
            if fd == exit_fd and exited_at is None:
                sb.poll()
                exited_at = time.monotonic()
                continue
            if fd == signals_fd:
                sigs = read_some(fd)
                if exited_at is None:
                    for sig in sigs:
                        sb.send_signal(sig)
                elif sigs and len(ready) == 1:  # after the end, with nothing else moving:
                    for sink in sinks:  # give up on a caller that does not read
                        if sink.pending:
                            sink.stop()
                continue
            if fd == stdin_fd and pending:
                try:
                    n = os.write(fd, pending[:CHUNK])
                except BlockingIOError:
                    n = 0
                except BrokenPipeError:  # the command closed its stdin
                    n, source = len(pending), -1
                pending = pending[n:]
                if not pending and source < 0:
                    sb._close_stdin()
                    stdin_fd = -1
                continue
            if fd == source and not pending:
                try:
                    data = os.read(fd, CHUNK)
                except OSError:  # e.g. EIO from a terminal that hung up: its end
                    data = b""
                if data:
                    pending = memoryview(data)
                else:
                    source = -1
                    sb._close_stdin()
                    stdin_fd = -1
                continue
            for sink in sinks:
                if sink.pending and fd == sink.to:
                    try:
                        n = os.write(fd, sink.pending[: sink.step])
                    except BlockingIOError:
                        n = 0
                    except OSError:  # the caller's end is gone: the command's next write fails too
                        sink.stop()
                        break
                    sink.pending = sink.pending[n:]
                    break
                if sink.reading and not sink.pending and fd == sink.file.fileno():
                    try:
                        data = os.read(fd, CHUNK)
                    except BlockingIOError:
                        break
                    if not data:
                        sink.reading = False
                    elif sink.take(data) and sink.kill_past:
                        sb.kill()
                    break
    sb.wait()
    sb._close_stdin()
    return timed_out


def read_and_drop(files: tuple[IO[bytes], ...]) -> None:
    """Read and drop until every writer is gone, then close."""
    poller = select.poll()
    live = {f.fileno(): f for f in files}
    for fd in live:
        poller.register(fd, select.POLLIN)
    while live:
        for fd, _ in poller.poll():
            if not os.read(fd, CHUNK):
                poller.unregister(fd)
                live.pop(fd).close()


def read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 512)
    except BlockingIOError:
        return b""


def captured(sinks: Sequence[Sink], stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> tuple[bytes, bytes]:
    """What stdout and stderr kept in memory, with a marker where the limit dropped the rest."""
    out = []
    for f in (stdout, stderr):
        sink = next((s for s in sinks if s.file is f), None)
        data = b"" if sink is None else b"".join(sink.chunks)
        if sink is not None and sink.to < 0 and sink.dropped and not sink.kill_past:
            data += b"\n[isolation: output truncated at %d bytes; %d more bytes dropped]\n" % (sink.kept, sink.dropped)
        out.append(data)
    return out[0], out[1]
