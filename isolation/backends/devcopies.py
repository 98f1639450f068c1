"""A root caller's private copies of the /dev nodes its bwrap sandboxes bind.

For a root caller the bwrap sandbox user is host uid 0, the owner of the host's
/dev/null and friends, and bubblewrap cannot bind a node read-only and still
usable: each sandbox gets device nodes of its own (mknod), in a fresh directory
no other sandbox ever binds. Making and removing one is 1-2 ms of file system
work (mkdir, six mknod, rmtree, a sweep of the base directory), so one worker
thread does it off the run's path: it keeps one directory ready, handed to
exactly one run (`take`), and removes each run's directory once its sandbox is
gone (`discard`). It works when a run has ended, not while one is being set up.
A run that finds nothing ready (or only one older than `READY_MAX_AGE`) makes
its own, as before.

Nothing outlives the caller: at exit the worker is stopped and the ready
directory and any not yet removed are deleted; one left by a caller that died
without atexit (SIGKILL, os._exit) carries its pid in its name and is swept by
the next caller that makes one. In a child after `fork()` everything starts
empty (the parent's directories stay the parent's).
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading
import time
from collections.abc import Sequence

from isolation.backends import owned_dirs
from isolation.errors import SandboxSetupError
from isolation.plan import Mount

_DEV_COPY_DIRS = ("/var/tmp", "/tmp", "/dev/shm")
# How long exit waits for the worker to finish the directory it is making or removing.
_EXIT_JOIN = 5.0
# A ready directory older than this is not handed out but replaced: a temporary-file
# cleaner (systemd-tmpfiles, tmpreaper) judges by age, in days, and may remove it.
READY_MAX_AGE = 600.0


def make_dev_copies(devices: Sequence[Mount]) -> str:
    """A fresh directory holding private copies of the plan's `device` nodes (root only),
    each named as its target."""
    for base in _DEV_COPY_DIRS:
        try:
            if os.statvfs(base).f_flag & os.ST_NODEV:
                continue
        except OSError:
            continue
        d = owned_dirs.make(base, "dev")
        try:
            for m in devices:
                st = os.stat(str(m.source))
                copy = os.path.join(d, os.path.basename(m.target))
                os.mknod(copy, 0o666 | (st.st_mode & 0o170000), st.st_rdev)
                os.chmod(copy, 0o666)
        except OSError as exc:
            shutil.rmtree(d, ignore_errors=True)
            raise SandboxSetupError.from_oserror(
                exc, f"cannot create private device nodes in {d}", step="mknod", path=d
            ) from None
        return d
    raise SandboxSetupError(
        f"no directory that allows device nodes among {', '.join(_DEV_COPY_DIRS)} (all mounted nodev); "
        "a root caller's bwrap sandbox needs one for private /dev nodes, or use the native backend",
        step="mknod",
    )


class _Worker:
    """One ready directory of copies (for the devices last asked for) and the used ones
    still to remove, served by one daemon thread. All state is under `_cond`."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._want: tuple[Mount, ...] | None = None  # the devices the next run will likely ask for
        self._ready: tuple[tuple[Mount, ...], str, float] | None = None  # devices, path, made at
        self._doomed: list[str] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def take(self, devices: Sequence[Mount]) -> str:
        """A directory of copies of `devices` that no other run has had or will get."""
        key = tuple(devices)
        with self._cond:
            ready, self._ready = self._ready, None
            self._want = key
            if ready is not None and (ready[0] != key or time.monotonic() - ready[2] > READY_MAX_AGE):
                self._doomed.append(ready[1])
                ready = None
        if ready is not None:
            return ready[1]
        return make_dev_copies(key)  # nothing ready: made on the run's path

    def discard(self, path: str) -> None:
        """Remove `path` (its sandbox is gone), and make the next run's directory: in the thread."""
        with self._cond:
            if not self._closed and self._start():
                self._doomed.append(path)
                self._cond.notify()
                return
        shutil.rmtree(path, ignore_errors=True)

    def _start(self) -> bool:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="isolation-bwrap-dev", daemon=True)
            try:
                self._thread.start()
            except RuntimeError:  # interpreter shutting down: no new threads
                self._thread = None
                return False
            atexit.register(self.close)
        return True

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not (self._doomed or self._closed or (self._want is not None and self._ready is None)):
                    self._cond.wait()
                doomed, self._doomed = self._doomed, []
                make = None if self._closed or self._ready is not None else self._want
            for path in doomed:
                shutil.rmtree(path, ignore_errors=True)
            if make is None:
                if doomed:
                    continue
                return  # closed, nothing left to remove
            try:
                path = make_dev_copies(make)
            except SandboxSetupError:
                with self._cond:  # a run making its own will say why; do not retry in a loop
                    if self._want == make:
                        self._want = None
                continue
            with self._cond:
                if self._closed or self._ready is not None:
                    self._doomed.append(path)
                else:
                    self._ready = (make, path, time.monotonic())
                    self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread and remove every directory still ours (at exit)."""
        if os.getpid() != self._pid:  # an atexit handler a forked child inherited: not its directories
            return
        with self._cond:
            self._closed = True
            if self._ready is not None:
                self._doomed.append(self._ready[1])
                self._ready = None
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(_EXIT_JOIN)
        with self._cond:
            doomed, self._doomed = self._doomed, []
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)


_WORKER = _Worker()


def _after_fork_in_child() -> None:
    global _WORKER
    _WORKER = _Worker()  # the parent's directories and thread are not this process's


os.register_at_fork(after_in_child=_after_fork_in_child)


def take(devices: Sequence[Mount]) -> str:
    """A fresh directory of private copies of `devices` for one run (see the module docstring)."""
    return _WORKER.take(devices)


def discard(path: str) -> None:
    """Hand a run's directory back once its sandbox is gone: it is removed, never reused."""
    _WORKER.discard(path)
