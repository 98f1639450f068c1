"""Whether a backend can build a sandbox on this host, decided by building one.

Reading sysctls and trying `unshare` is not enough: an LSM may let a user
namespace be created and then refuse every mount in it (Ubuntu's AppArmor
restriction), a parent sandbox or container may refuse seccomp(2), and so on.
So `auto` and `isolation probe` start the smallest real sandbox, the default
policy running `true`, through the backend's own launch path, and call the
backend available only when it ran and exited 0.

A pass is kept for the process (steady-state cost: a dict lookup); a failure
is not, so a transient one (a full process table) is checked again next time,
and `forget` drops a pass when a real run then fails to set up.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import threading
from collections.abc import Callable

from isolation.backends.base import Availability, Launched, Stdio
from isolation.errors import IsolationError, SandboxSetupError
from isolation.plan import SandboxPlan, build_plan
from isolation.policy import IsolationPolicy

TIMEOUT = 30.0  # seconds for the minimal sandbox to run `true`
Launch = Callable[[SandboxPlan, Stdio], Launched]

_passed: dict[tuple[str, int, int], bool] = {}
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it mid-check


os.register_at_fork(after_in_child=_after_fork_in_child)


def check(name: str, launch: Launch, reason: str) -> Availability:
    """Available with `reason` once a minimal sandbox started with `launch` ran `true`."""
    try:
        require(name, launch)
    except IsolationError as exc:
        return Availability(False, str(exc))
    return Availability(True, reason)


def require(name: str, launch: Launch) -> None:
    """Return once a minimal sandbox started with `launch` has run `true` (now or earlier
    in this process); else raise why not: the error its launch raised, or a
    SandboxSetupError naming the failure and its cause."""
    key = (name, os.geteuid(), os.getegid())
    if key in _passed:
        return
    with _lock:  # one check at a time: concurrent callers wait for its answer
        if key in _passed:
            return
        failure = _run_true(launch)
        if failure is not None:
            raise failure
        _passed[key] = True


def forget(name: str) -> None:
    """Check `name` (and its variants, ``name/...``) again next time: a sandbox of it failed to set up."""
    for key in [k for k in _passed if k[0] == name or k[0].startswith(f"{name}/")]:
        _passed.pop(key, None)


def _run_true(launch: Launch) -> IsolationError | None:
    """None if the minimal sandbox ran `true` and exited 0; else what went wrong, with its cause."""
    try:
        plan = build_plan(IsolationPolicy(), ["true"])
    except IsolationError as exc:
        return exc
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            launched = launch(plan, Stdio(devnull, devnull, err_w))
        except IsolationError as exc:
            return exc
        finally:
            os.close(err_w)
        child = launched.child
        try:
            rc = child.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return SandboxSetupError(f"a minimal sandbox running `true` did not end within {TIMEOUT:g} s", step="wait")
        finally:
            child.release()
        os.set_blocking(err_r, False)
        try:
            stderr = os.read(err_r, 4096).decode(errors="replace").strip()
        except BlockingIOError:
            stderr = ""
    finally:
        os.close(devnull)
        os.close(err_r)
    if rc == 0:
        return None
    said = f": {stderr}" if stderr else ""
    hint = explain(stderr)
    msg = f"a minimal sandbox running `true` failed (exit status {rc}){said}"
    if hint:
        msg += f". {hint[:1].upper()}{hint[1:]}"
    return SandboxSetupError(msg, step="sandbox")


_ERRNOS = {os.strerror(e): e for e in sorted(errno.errorcode)}


def explain(message: str) -> str:
    """The cause and fix behind a sandbox tool's error text (bubblewrap's), or ""."""
    from isolation import userns

    found = re.search(r": ([A-Z][^:]*?)\s*$", message.splitlines()[-1]) if message else None
    err = _ERRNOS.get(found.group(1), 0) if found else 0
    low = message.lower()
    if "namespace" in low or "uid map" in low or "setgroups" in low:
        return userns.userns_refusal(err or errno.EPERM)
    if "seccomp" in low:
        return userns.seccomp_refusal(err or errno.EPERM)
    if err in (errno.EAGAIN, errno.ENOMEM):
        return userns.nproc_refusal(err)
    if err in (errno.EACCES, errno.EPERM):  # the rest of the setup: mounts, pivot_root, hostname
        return userns.mount_refusal(err)
    return ""
