"""Whether this process can create user namespaces (both backends need them)."""

from __future__ import annotations

import ctypes
import functools
import os

_CLONE_NEWUSER = 0x10000000


@functools.cache
def userns_status() -> tuple[bool, str]:
    """(usable, reason). Probed once by forking a child that unshares a user namespace."""
    for path, bad in (("/proc/sys/kernel/unprivileged_userns_clone", "0"), ("/proc/sys/user/max_user_namespaces", "0")):
        try:
            with open(path) as f:
                if f.read().strip() == bad and (os.geteuid() != 0 or path.endswith("max_user_namespaces")):
                    return False, f"{path} is {bad}"
        except OSError:
            pass
    try:
        pid = os.fork()
    except OSError as exc:
        return False, f"fork failed: {exc.strerror}"
    if pid == 0:  # pragma: no cover - child: never return into the caller's code
        code = 255
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            code = 0 if libc.unshare(_CLONE_NEWUSER) == 0 else min(ctypes.get_errno() or 255, 255)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True, "user namespaces available"
    return False, f"unshare(CLONE_NEWUSER) failed: {os.strerror(code) if code > 0 else 'killed'}"
