"""The handle of a running native sandbox, and the reaper of its init.

With a pid namespace the handle is the sandbox's isolation-init (pid 1
inside): once the sandbox is empty it writes a report (the command's wait
status, CPU time and peak RSS of every process it reaped) on the status
pipe, and its own exit is left to a background reaper. Without one (the host
layout) it is the command itself, leading its own process group.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Protocol

from isolation.cgroups import PidsCgroup
from isolation.result import Usage


class Cleanup(Protocol):
    def cleanup(self) -> None: ...


class _Reaper:
    """Reaps sandboxes' inits after they have reported: the command and every
    process of the sandbox are gone by then, and what is left of the exit (the
    kernel tearing down the namespaces, ~0.5 ms) need not hold up the caller.

    Back to back, waking a thread for every init (a futex wake, a context switch
    and a GIL hand-off per run) cost the caller more than the reaping itself
    (~0.2 ms of CPU per run): so `adopt` first reaps, without blocking, the inits
    adopted earlier whose exit has completed meanwhile, and a thread only looks
    after the rest, every `LINGER` seconds while any is left (an exited init
    stays a zombie that long at most) and asleep when none is."""

    LINGER = 0.05

    def __init__(self) -> None:
        self._pending: list[int] = []  # adopted, not reaped yet
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def adopt(self, pid: int) -> None:
        with self._cond:
            self._pending = [p for p in self._pending if not _reaped(p)]
            self._pending.append(pid)
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="isolation-reaper", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had (RLIMIT_NPROC): reap here, init is exiting
                    self._pending.remove(pid)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
                    return
                self._thread = thread
            elif len(self._pending) == 1:  # the thread sleeps for good while nothing is pending
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                self._pending = [p for p in self._pending if not _reaped(p)]
                self._cond.wait(self.LINGER if self._pending else None)

    def drain(self) -> None:
        """Return once every adopted init has been reaped."""
        with self._cond:
            pending, self._pending = self._pending, []
        for pid in pending:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _after_fork_in_child(self) -> None:
        self._pending = []  # the parent's inits are not this process's children
        self._cond = threading.Condition()
        self._thread = None


def _reaped(pid: int) -> bool:
    """Reap `pid` if its exit has completed; whether it is gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


REAPER = _Reaper()
os.register_at_fork(after_in_child=REAPER._after_fork_in_child)
REPORT = struct.Struct("=IIQQQ")  # struct iso_report: status, reserved, utime and stime in µs, maxrss in KiB


class NativeChild:
    """The sandbox's init (pid 1 inside); its report pipe carries the command's wait status.

    Two steps end it. Reaping (`_reap`, under `_lock`) is quick: read the report or
    wait4 init. Settling (`_settle`, under no lock) is what follows and may be slow:
    a pids cgroup's removal is retried while the kernel still detaches the dead
    tasks. `poll()` never blocks on either: a CLI's SIGINT handler may call it while
    the main thread it interrupted is in the middle of both. Releasing (`release`, by
    the owner once it has collected the result) hands an init that reported to the
    reaper thread.
    """

    def __init__(
        self,
        pid: int,
        status_fd: int,
        *,
        group: bool = False,
        cleanup: Cleanup | None = None,
        cgroup: PidsCgroup | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._pid = pid
        self._on_end = on_end  # told once the end is known (before what follows it)
        self._to_reap = -1  # init, once it has reported: the reaper's, at release()
        self._release_lock = threading.Lock()
        self._cgroup = cgroup
        self._refused_forks = 0
        self._status_fd = status_fd
        self._group = group  # no pid namespace: the command leads its own process group
        self._cleanup = cleanup
        self._usage: Usage | None = None
        self._lock = threading.Lock()
        self._unsettled = False  # reaped, and nobody has claimed what follows yet
        self._settled = threading.Event()  # what follows the end is done
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)
        # With a pid namespace, init reports once the sandbox is empty and is reaped in the
        # background; with a cgroup to remove, its exit is waited for (it is still in it).
        self._early = not group and cgroup is None and status_fd >= 0
        if status_fd >= 0:
            os.set_blocking(status_fd, False)

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def exit_fd(self) -> int:
        """Readable once the sandbox's end is known (poll() then returns it)."""
        return self._status_fd if self._early and self._status_fd >= 0 else self._pidfd

    def _read_report(self) -> bytes | None:
        """The report, b"" if init ended without one, None if not there yet."""
        try:
            return os.read(self._status_fd, REPORT.size)
        except BlockingIOError:
            return None

    def _record(self, status: int, reaped: bool) -> None:
        """Under _lock: the end is known; close its descriptors, leave the rest to _settle."""
        self.returncode = os.waitstatus_to_exitcode(status)
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1
        os.close(self._pidfd)
        self._pidfd = -1
        if not reaped:
            self._to_reap = self._pid
        self._unsettled = True

    def _settle(self) -> None:
        """What follows the end, by whichever caller claims it first; never under _lock."""
        with self._lock:
            mine, self._unsettled = self._unsettled, False
        if not mine:
            return
        if self._on_end is not None:
            self._on_end()
        try:
            if self._group:  # what the command left in its process group goes with it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._pid, signal.SIGKILL)
            if self._cleanup is not None:
                self._cleanup.cleanup()
            cgroup, self._cgroup = self._cgroup, None
            if cgroup is not None:  # init has exited: the kernel has killed the rest
                self._refused_forks = cgroup.refused_forks()
                cgroup.remove()
        finally:
            self._settled.set()

    def release(self) -> None:
        """Hand init to the reaper once the end has come; idempotent. That wakes a thread,
        which would compete with a caller still collecting the result: the owner calls
        this once it has collected it (or the handle's finalizer does)."""
        if self.returncode is None:
            return
        self._settle()
        self._settled.wait()
        with self._release_lock:
            pid, self._to_reap = self._to_reap, -1
        if pid > 0:
            REAPER.adopt(pid)

    def limits_hit(self) -> tuple[str, ...]:
        """Limits the sandbox ran into that only the backend can see (once it has ended)."""
        if self.returncode is None:
            return ()
        self._settled.wait()
        return ("max_pids",) if self._refused_forks else ()

    def _reap(self, *, block: bool = True) -> int | None:
        # One reaper at a time: the runner's output thread and a caller's wait() may race.
        # Without `block`, a busy lock means "not known yet" (another thread, or the code
        # this signal handler interrupted, is reaping), as Popen.poll does.
        if not self._lock.acquire(blocking=block):
            return None
        try:
            if self.returncode is None and not self._ended():
                return None
            rc = self.returncode
        finally:
            self._lock.release()
        self._settle()
        return rc

    def _ended(self) -> bool:
        """Under _lock: whether the sandbox has ended (then recorded)."""
        if self._early:
            report = self._read_report()
            if report is None:
                return False
            if len(report) == REPORT.size:  # the sandbox is empty; init's exit is left to the reaper
                status = self._take_report(report)
                self._record(status, reaped=os.wait4(self._pid, os.WNOHANG)[0] == self._pid)
                return True
            self._early = False  # init ended without a report (killed): wait for its exit
        pid, status, ru = os.wait4(self._pid, os.WNOHANG)
        if pid != self._pid:
            return False
        report = self._read_report() if self._status_fd >= 0 else None
        if report is not None and len(report) == REPORT.size:
            status = self._take_report(report)
        else:  # no report: the rusage of our child (the command, or an init killed early)
            self._usage = Usage(cpu_time=ru.ru_utime + ru.ru_stime, peak_rss=ru.ru_maxrss * 1024)
        self._record(status, reaped=True)
        return True

    def _take_report(self, report: bytes) -> int:
        status, _, utime, stime, maxrss = REPORT.unpack(report)
        self._usage = Usage(cpu_time=(utime + stime) / 1e6, peak_rss=maxrss * 1024)
        return int(status)

    def poll(self) -> int | None:
        """The exit status, or None while it runs or while another caller is reaping it; never blocks."""
        return self._reap(block=False)

    def term_signal(self, status: int) -> int | None:
        """init reports the command's wait status: -N is signal N, as with Popen."""
        return -status if status < 0 else None

    def usage(self) -> Usage | None:
        """CPU time and peak RSS of every process of the sandbox, as isolation-init
        reported them (it reaps them all); None when init was killed before reporting."""
        return self._usage

    def wait(self, timeout: float | None = None) -> int:
        # Block on the report or the pidfd, never inside the lock: kill() from another thread must get through.
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        while (rc := self._reap()) is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise subprocess.TimeoutExpired("sandbox", timeout or 0.0)
            with self._lock:
                fd = os.dup(self.exit_fd) if self.returncode is None else -1
            if fd < 0:
                continue  # ended meanwhile
            try:
                p = select.poll()  # not select(): descriptors above 1023 are common under load
                p.register(fd, select.POLLIN)
                p.poll(None if remaining is None else remaining * 1000)
            finally:
                os.close(fd)
        self._settled.wait()  # another caller may still be settling it
        return rc

    def send_signal(self, sig: int) -> None:
        with self._lock:  # the pidfd is closed under the lock once init is reaped
            if self.returncode is None and self._pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        """SIGKILL to init ends the pid namespace: the kernel kills every process in it."""
        if self.returncode is not None or self._pidfd < 0:
            return
        if self._group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
        self.send_signal(signal.SIGKILL)

    def __del__(self) -> None:
        if self.returncode is None and getattr(self, "_pidfd", -1) >= 0:
            self.kill()
            with contextlib.suppress(ChildProcessError):
                self.wait()
        if getattr(self, "_release_lock", None) is not None:
            self.release()

