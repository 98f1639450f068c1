"""Directories a caller makes for its own use under a shared temporary directory.

Each is named `isolation-<kind>-<pid>-*` after the process that made it, which
removes it itself (at exit, or once its sandbox is gone). One whose owner died
without that (SIGKILL, os._exit, fork-pool workers) is removed by the next
caller that makes a directory of the same kind there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile


def sweep_dead_owners(base: str, kind: str) -> None:
    """Remove `isolation-<kind>-<pid>-*` directories in `base` whose owning process
    is gone: left by callers that died without atexit (SIGKILL, os._exit, fork-pool
    workers). Only our own directories, never a symlink, never a live owner's."""
    pattern = re.compile(rf"isolation-{kind}-(\d+)-\w+")
    uid = os.geteuid()
    with contextlib.suppress(OSError):
        for entry in os.listdir(base):
            m = pattern.fullmatch(entry)
            if m is None:
                continue
            path = os.path.join(base, entry)
            try:
                st = os.lstat(path)
                if st.st_uid != uid or not stat.S_ISDIR(st.st_mode):
                    continue
                os.kill(int(m.group(1)), 0)
            except ProcessLookupError:
                shutil.rmtree(path, ignore_errors=True)
            except OSError:  # another user's live process (EPERM), or gone meanwhile
                pass


def make(base: str, kind: str) -> str:
    """A fresh directory of `kind` in `base` (mode 0700), this process's; dead owners' swept first."""
    sweep_dead_owners(base, kind)
    return tempfile.mkdtemp(prefix=f"isolation-{kind}-{os.getpid()}-", dir=base)
