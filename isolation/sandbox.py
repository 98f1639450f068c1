"""`Sandbox`: a running sandbox, shaped like subprocess.Popen (what `spawn` returns)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import IO

from isolation.backends.base import Launched
from isolation.egress import EgressSession
from isolation.pump import DRAIN_GRACE, Sink, captured, pump, read_and_drop
from isolation.result import NetworkRecord, Usage


class Sandbox:
    """A running sandbox, shaped like subprocess.Popen.

    `stdin`/`stdout`/`stderr` are binary file objects when PIPE was requested.
    Use it as a context manager: leaving the block kills whatever is still
    running and reaps it, so no process or descriptor outlives the handle.
    """

    def __init__(
        self,
        argv: tuple[str, ...],
        backend: str,
        launched: Launched,
        pipes: dict[str, IO[bytes]],
        discard: Sequence[IO[bytes]] = (),
    ) -> None:
        self.argv = argv
        self.backend = backend
        self.enforced = launched.enforced
        self.missing = launched.missing
        self._child = launched.child
        self.stdin: IO[bytes] | None = pipes.get("stdin")
        self.stdout: IO[bytes] | None = pipes.get("stdout")
        self.stderr: IO[bytes] | None = pipes.get("stderr")
        self.returncode: int | None = None
        self.started = time.monotonic()
        self._closed = False
        self._discarder: threading.Thread | None = None
        self.egress: EgressSession | None = None  # the allowlist's proxy, closed with the sandbox
        self._network_log: tuple[NetworkRecord, ...] = ()
        if discard:  # DEVNULL outputs: read and dropped until the sandbox's end
            self._discarder = threading.Thread(target=read_and_drop, args=(tuple(discard),), name="isolation-devnull")
            self._discarder.daemon = True
            self._discarder.start()

    @property
    def network_log(self) -> tuple[NetworkRecord, ...]:
        """What the sandbox asked its egress proxy for so far (all of it once closed)."""
        return self.egress.proxy.log if self.egress is not None else self._network_log

    @property
    def pid(self) -> int:
        return self._child.pid

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._child.poll()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        # Asked even when poll() saw the end: the backend may still be finishing it in another thread.
        rc = self._child.wait(timeout)
        if self.returncode is None:
            self.returncode = rc
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            self._child.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        """Kill the whole sandbox tree (not only the direct child)."""
        if self.returncode is None:
            self._child.kill()

    def usage(self) -> Usage | None:
        """CPU time and peak RSS as the backend measured them, once the sandbox has ended; None if unmeasured."""
        return None if self.returncode is None else self._child.usage()

    def backend_limits_hit(self) -> tuple[str, ...]:
        """Limits the backend saw the sandbox run into (e.g. a fork refused by a pids cgroup), once it ended."""
        return () if self.returncode is None else self._child.limits_hit()

    @property
    def term_signal(self) -> int | None:
        """The signal that ended the command, if any (None while it runs).

        bubblewrap reports a command killed by signal N as exit status 128+N, so
        with the bwrap backend an exit status 129..192 is read as signal 1..64.
        """
        rc = self.returncode
        return None if rc is None else self._child.term_signal(rc)

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Send `input`, read all output, wait. On timeout the sandbox is killed and
        subprocess.TimeoutExpired raised with the output collected so far."""
        out, err, timed_out = self._collect(input, None if timeout is None else time.monotonic() + timeout)[:3]
        if timed_out:
            raise subprocess.TimeoutExpired(list(self.argv), timeout or 0.0, out, err)
        return out, err

    def _collect(
        self, input: bytes | None, deadline: float | None, max_output: int | None = None
    ) -> tuple[bytes, bytes, bool, bool]:
        """Feed stdin, drain stdout/stderr and wait, all against one deadline.

        Returns (stdout, stderr, timed_out, truncated). At most `max_output` bytes
        per stream are kept (the rest is read and dropped, so the command never
        blocks on a full pipe, and a marker is appended).
        """
        sinks = [Sink(n, f, max_output) for n, f in (("stdout", self.stdout), ("stderr", self.stderr)) if f]
        timed_out = pump(self, input, sinks, deadline)
        out, err = captured(sinks, self.stdout, self.stderr)
        return out, err, timed_out, any(s.dropped for s in sinks)

    def _close_stdin(self) -> None:
        if self.stdin is not None and not self.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.stdin.close()

    def close(self) -> None:
        """Kill anything still running, reap it, release every descriptor, and let the
        backend do what follows the end (`Child.release`)."""
        if self.poll() is None:
            self.kill()
            self.wait()
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None and not f.closed:
                with contextlib.suppress(OSError):
                    f.close()
        if self._discarder is not None:  # at EOF now, unless a straggler of backend none holds the pipe
            self._discarder.join(DRAIN_GRACE)
        self._closed = True
        if self.egress is not None:
            self._network_log = self.egress.close()
            self.egress = None
        self._child.release()  # what follows the end: the result has been collected

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()
