"""Child handles over subprocess.Popen: the `none` backend's command and bubblewrap's monitor.

Both implement `base.Child`; the native backend's init has its own (`native`).
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shutil
import signal
import subprocess
import threading
import time

from isolation.backends import devcopies
from isolation.cgroups import PidsCgroup
from isolation.result import Usage

# How long reaping bubblewrap's monitor waits for the sandbox's pid namespace to empty after the command.
INIT_EXIT_TIMEOUT = 10.0


def poll_fd(fd: int, timeout: float | None) -> bool:
    """Whether `fd` became readable within `timeout` seconds (None: wait indefinitely)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(None if timeout is None else max(0, int(timeout * 1000) + 1)))


def drain(fd: int) -> bytes:
    """What is buffered in pipe `fd` now (its writers are gone or idle); at most 64 KiB."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while len(data) < 65536 and (chunk := os.read(fd, 65536 - len(data))):
            data += chunk
    return data


class PopenChild:
    """A `Child` over subprocess.Popen whose process group is the whole sandbox on the host side.

    It reaps with wait4(2), so `usage()` can report the rusage of the direct child
    (which covers the descendants it waited for, not the ones it left behind). Its
    exit descriptor is a pidfd, closed once the child is reaped.
    """

    def __init__(self, proc: subprocess.Popen[bytes], *, kill_group: bool) -> None:
        self._proc = proc
        self._kill_group = kill_group
        self._lock = threading.Lock()
        self._rusage: resource.struct_rusage | None = None
        try:
            self._pidfd = os.pidfd_open(proc.pid)
        except OSError:  # out of descriptors: nothing may outlive the failed start
            self._pidfd = -1
            self.kill()
            proc.wait()  # killed: reaped at once
            self._killpg()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def exit_fd(self) -> int:
        return self._pidfd

    def _try_reap(self) -> int | None:
        with self._lock:
            if self._proc.returncode is None:
                try:
                    pid, status, ru = os.wait4(self._proc.pid, os.WNOHANG)
                except ChildProcessError:  # pragma: no cover - nobody else waits for our child
                    pid, status, ru = self._proc.pid, 255 << 8, None
                if pid == 0:
                    return None
                self._proc.returncode = os.waitstatus_to_exitcode(status)
                self._rusage = ru
                self._close_pidfd()
            rc = self._proc.returncode
        self._after_exit()
        return rc

    def _close_pidfd(self) -> None:
        """Under _lock (or with no other thread left)."""
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def poll(self) -> int | None:
        return self._try_reap()

    def wait(self, timeout: float | None = None) -> int:
        rc = self._try_reap()
        if rc is not None:
            return rc
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = os.pidfd_open(self._proc.pid)
        try:
            while (rc := self._try_reap()) is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise subprocess.TimeoutExpired(self._proc.args, timeout or 0.0)
                poll_fd(pidfd, remaining)
        finally:
            os.close(pidfd)
        return rc

    def send_signal(self, sig: int) -> None:
        # Under the lock the child cannot be reaped meanwhile, so its pid is still its own.
        with self._lock:
            if self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._proc.pid, sig)

    def kill(self) -> None:
        with self._lock:
            if self._proc.returncode is None:
                self._killpg()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._proc.pid, signal.SIGKILL)
        self._after_exit()

    def term_signal(self, status: int) -> int | None:
        """Popen's convention: -N is signal N."""
        return -status if status < 0 else None

    def usage(self) -> Usage | None:
        """CPU time and peak RSS of the command and the descendants it waited for."""
        ru = self._rusage
        if ru is None:
            return None
        return Usage(cpu_time=ru.ru_utime + ru.ru_stime, peak_rss=ru.ru_maxrss * 1024)

    def limits_hit(self) -> tuple[str, ...]:
        return ()

    def release(self) -> None:
        """Everything that follows the end was done when it was reaped: nothing is left to release."""

    def _killpg(self) -> None:
        if self._kill_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, 9)

    def _after_exit(self) -> None:
        # Processes the command left behind in its group (on the host for `none`)
        # must not outlive the run.
        if self._proc.returncode is not None:
            self._killpg()

    def __del__(self) -> None:
        if getattr(self, "_pidfd", -1) >= 0:
            os.close(self._pidfd)


class BwrapChild(PopenChild):
    """bubblewrap's monitor process (our child) plus a pidfd on the sandbox's init.

    The monitor exits as soon as the command does, and its death only *starts*
    the end of the sandbox (the init gets SIGKILL through --die-with-parent, and
    the kernel then kills every process of the pid namespace). Reaping therefore
    also waits for the init to be gone: then no process of the sandbox remains.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        init_pidfd: int,
        cgroup: PidsCgroup | None = None,
        dev_copies: str | None = None,
        bwrap_stderr: int = -1,
    ) -> None:
        super().__init__(proc, kill_group=True)
        self._dev_copies = dev_copies
        # The read end of bubblewrap's own stderr. Held until the end, so bubblewrap
        # never meets a closed pipe (SIGPIPE) while its sandbox runs.
        self._bwrap_stderr = bwrap_stderr
        self.started = False  # set by launch() once the command has been executed
        self._init_pidfd = init_pidfd
        self._init_lock = threading.Lock()
        self._cgroup = cgroup
        self._refused_forks = 0

    def term_signal(self, status: int) -> int | None:
        """bubblewrap exits with 128+N when the command is killed by signal N: an exit
        status 129..192 is read as signal 1..64."""
        if status < 0:
            return -status
        return status - 128 if 128 < status <= 128 + 64 else None

    def limits_hit(self) -> tuple[str, ...]:
        """Limits the sandbox ran into that only the backend can see (once it has ended)."""
        return ("max_pids",) if self._refused_forks else ()

    @property
    def init_pidfd(self) -> int:
        return self._init_pidfd

    def track_init(self, pidfd: int) -> None:
        """Take ownership of a pidfd on the sandbox's init (from --info-fd)."""
        with self._init_lock:
            self._init_pidfd = pidfd

    def kill(self) -> None:
        self._kill_init()
        super().kill()

    def bwrap_stderr(self) -> bytes:
        """After a failed start, once killed and reaped: what bubblewrap wrote on its stderr."""
        fd = self._bwrap_stderr
        return b"" if fd < 0 else drain(fd)

    def usage(self) -> Usage | None:
        # The monitor's rusage covers bubblewrap itself only: it exits before its
        # child, the sandbox's init, has reaped anything. Nothing honest to report.
        return None

    def _kill_init(self) -> None:
        with self._init_lock:
            if self._init_pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)

    def _after_exit(self) -> None:
        super()._after_exit()
        if self._proc.returncode is None:
            return
        with self._init_lock:
            fd, self._init_pidfd = self._init_pidfd, -1
            cgroup, self._cgroup = self._cgroup, None
        try:
            if fd >= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                # Readable once the init has exited, which it does only after the
                # kernel has killed and waited for every other process in its pid namespace.
                poll_fd(fd, INIT_EXIT_TIMEOUT)
        finally:
            if fd >= 0:
                os.close(fd)
            if cgroup is not None:
                self._refused_forks = cgroup.refused_forks()
                cgroup.remove()
            dev, self._dev_copies = self._dev_copies, None
            if dev is not None:  # the sandbox is gone: nothing is bound from it any more
                devcopies.discard(dev)
            if self.started:  # else launch() still reads bubblewrap's message
                self.release()

    def release(self) -> None:
        """Release bubblewrap's stderr pipe (once the sandbox has ended and any error was read)."""
        if self._proc.returncode is None:
            return
        with self._init_lock:  # poll() and wait() may race here from two threads
            fd, self._bwrap_stderr = self._bwrap_stderr, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        super().__del__()
        fd = getattr(self, "_init_pidfd", -1)
        if fd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)
        cgroup = getattr(self, "_cgroup", None)
        if cgroup is not None:
            with contextlib.suppress(OSError):
                cgroup.remove(attempts=1)  # busy: swept by a later run
        dev = getattr(self, "_dev_copies", None)
        if dev is not None:
            shutil.rmtree(dev, ignore_errors=True)
        err = getattr(self, "_bwrap_stderr", -1)
        if err >= 0:
            os.close(err)
