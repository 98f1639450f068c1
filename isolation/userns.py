"""Whether this process can create user namespaces (both backends need them)."""

from __future__ import annotations

import functools
import os


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
    if pid == 0:  # pragma: no cover - child
        try:
            os.unshare(os.CLONE_NEWUSER)
            os._exit(0)
        except OSError as exc:
            os._exit(min(exc.errno or 1, 255))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True, "user namespaces available"
    return False, f"unshare(CLONE_NEWUSER) failed: {os.strerror(code) if code > 0 else 'killed'}"
