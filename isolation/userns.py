"""What the kernel lets this process use for a sandbox (user namespaces, which
both backends need; seccomp; Landlock), and why not: the host facts behind
every "cannot build a sandbox here" message.

Each diagnosis names the concrete cause found on this host and its fix, read
when the error happens (a sysctl, a seccomp filter, an enclosing sandbox, an
LSM), so a message never lists causes that do not apply, and never advises a
backend the same cause blocks.
"""

from __future__ import annotations

import errno
import os
import resource
import threading
from typing import Any

_MAX_USERNS = "/proc/sys/user/max_user_namespaces"
_DEBIAN_CLONE = "/proc/sys/kernel/unprivileged_userns_clone"
_APPARMOR = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
_SANDBOX_SYSCALLS = "unshare, clone with CLONE_NEW* flags, mount and the new mount API, pivot_root"


def _seccomp_fix(syscalls: str) -> str:
    return (
        f"allow {syscalls} in the container's seccomp profile (docker or podman run "
        "--security-opt seccomp=PROFILE.json), or run isolation outside the container"
    )

# Definitive answers only: a failure to fork is transient and is never remembered.
_status: tuple[bool, str] | None = None
_status_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _status_lock
    _status_lock = threading.Lock()  # a thread of the parent may have held it mid-probe


os.register_at_fork(after_in_child=_after_fork_in_child)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def seccomp_filtered() -> bool:
    """Whether this process already runs under a seccomp filter (a container, a sandbox)."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1:2] == ["2"]
    return False


def enclosing_sandbox() -> str | None:
    """The sandbox this process runs in, when pid 1 says so."""
    comm = _read("/proc/1/comm")
    if comm == "bwrap":
        return "a bubblewrap sandbox (pid 1 is bwrap)"
    if comm == "_isolation_init":
        return "an isolation sandbox (pid 1 is isolation-init)"
    return None


def _nested(what: str) -> str | None:
    outer = enclosing_sandbox()
    if outer is None:
        return None
    return (
        f"this process runs inside {outer}, which refuses {what} to everything in it (nested sandboxes are not "
        "supported); fix: run isolation outside that sandbox"
    )


def userns_refusal(err: int) -> str:
    """Why unshare(CLONE_NEWUSER) failed with `err` here, and the fix."""
    limit = _read(_MAX_USERNS)
    if limit == "0" or err == errno.ENOSPC:
        where = f"{_MAX_USERNS} is {limit}" if limit == "0" else f"the limit {_MAX_USERNS} ({limit}) is reached"
        return (
            f"user namespaces are disabled by the sysctl user.max_user_namespaces ({where}, in this namespace or "
            "an enclosing one); fix: as root, sysctl -w user.max_user_namespaces=15000 (persist it in "
            "/etc/sysctl.d/), on the host that sets it"
        )
    if _read(_DEBIAN_CLONE) == "0" and os.geteuid() != 0:
        return (
            "unprivileged user namespaces are disabled by the sysctl kernel.unprivileged_userns_clone=0 (Debian); "
            "fix: as root, sysctl -w kernel.unprivileged_userns_clone=1"
        )
    name = os.strerror(err) if err > 0 else "killed"
    nested = _nested("new user namespaces")
    if nested is not None:
        return f"unshare(CLONE_NEWUSER) failed ({name}): {nested}"
    if err == errno.EPERM and seccomp_filtered():
        return (
            f"unshare(CLONE_NEWUSER) failed ({name}) and this process runs under a seccomp filter: a container's "
            f"seccomp profile (Docker's default refuses namespaces without CAP_SYS_ADMIN); fix: "
            f"{_seccomp_fix(_SANDBOX_SYSCALLS)}"
        )
    if _read(_APPARMOR) == "1":
        return (
            f"unshare(CLONE_NEWUSER) failed ({name}): kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu "
            "23.10 and later); fix: an AppArmor profile that allows `userns,` for this program, or as root "
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
        )
    return (
        f"unshare(CLONE_NEWUSER) failed ({name}): the kernel or a security module refuses unprivileged user "
        "namespaces here (a chroot, an LSM policy, or a container runtime); fix: allow them for this user"
    )


def mount_refusal(err: int) -> str:
    """Why a user namespace was created but a mount in it was refused (`err`), and the fix."""
    name = os.strerror(err)
    nested = _nested("mounts")
    if nested is not None:
        return f"mounting in a new user namespace failed ({name}): {nested}"
    apparmor = _read(_APPARMOR)
    if err == errno.EACCES or apparmor == "1":
        state = f"it is {apparmor} here" if apparmor is not None else "the usual cause of EACCES there"
        return (
            f"a new user namespace was created but may not mount ({name}): AppArmor's restriction of unprivileged "
            f"user namespaces, kernel.apparmor_restrict_unprivileged_userns=1 on Ubuntu 23.10 and later ({state}); "
            "fix: an AppArmor profile that allows `userns,` for this program (/etc/apparmor.d/), or as root "
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
        )
    if seccomp_filtered():
        return (
            f"mounting in a new user namespace failed ({name}) and this process runs under a seccomp filter: "
            f"a container's seccomp profile; fix: {_seccomp_fix(_SANDBOX_SYSCALLS)}"
        )
    return f"mounting in a new user namespace failed ({name}): a security module refuses it; fix: allow it"


def landlock_refusal(err: int) -> str:
    """Why Landlock is unavailable (landlock_create_ruleset failed with `err`), and the fix."""
    if err == errno.EOPNOTSUPP:
        return (
            "Landlock is built into the kernel but not enabled; fix: add landlock to the lsm= boot parameter "
            "(for example lsm=landlock,lockdown,yama,integrity,apparmor,bpf) or to CONFIG_LSM, and reboot"
        )
    if err == errno.ENOSYS:
        nested = _nested("the Landlock syscalls") if seccomp_filtered() else None
        if nested is not None:
            return f"landlock_create_ruleset failed (ENOSYS): {nested}"
        return "the kernel has no Landlock; fix: Linux 5.13 or later built with CONFIG_SECURITY_LANDLOCK=y"
    nested = _nested("the Landlock syscalls")
    if nested is not None:
        return f"landlock_create_ruleset failed ({os.strerror(err)}): {nested}"
    return (
        f"landlock_create_ruleset failed ({os.strerror(err)}): a seccomp filter (a container's seccomp profile) "
        f"refuses the Landlock syscalls; fix: {_seccomp_fix('the landlock_* syscalls')}"
    )


def seccomp_refusal(err: int) -> str:
    """Why a seccomp filter cannot be installed (`err`), and the fix."""
    if err in (errno.ENOSYS, errno.EINVAL) and not seccomp_filtered():
        return "the kernel has no seccomp filters; fix: a kernel built with CONFIG_SECCOMP_FILTER=y"
    nested = _nested("seccomp(2)")
    if nested is not None:
        return f"seccomp(2) is refused ({os.strerror(err)}): {nested}"
    return (
        f"seccomp(2) is refused ({os.strerror(err)}) by the seccomp filter this process runs under (a container's "
        f"or a parent sandbox's profile); fix: {_seccomp_fix('seccomp(2) and prctl(PR_SET_SECCOMP)')}"
    )


def nproc_refusal(err: int) -> str:
    """Why a new process could not be made (`err`, usually EAGAIN), and the fix."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    return (
        f"no new process could be created ({os.strerror(err)}): this user's process limit RLIMIT_NPROC "
        f"(ulimit -u, {limit} here) or the caller's pids cgroup is reached; fix: retry once processes have "
        "ended, or raise the limit"
    )


_MOUNT_STEPS = ("mount", "make mounts private", "open_tree", "mount_setattr", "move_mount", "proc", "devpts", "tmpfs")


def setup_hint(step: str, err: int) -> str:
    """The cause and fix of a sandbox setup step that failed with `err`, or ""."""
    if err in (errno.EAGAIN, errno.ENOMEM) and step.startswith(("clone", "fork")):
        return nproc_refusal(err)
    if step == "clone" and err in (errno.EPERM, errno.ENOSPC, errno.EUSERS, errno.EINVAL):
        return userns_refusal(err)
    if err not in (errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP):
        return ""
    if step.startswith("landlock"):
        return landlock_refusal(err)
    if step.startswith(("seccomp", "prctl(PR_SET_SECCOMP")):
        return seccomp_refusal(err)
    if step.startswith((*_MOUNT_STEPS, "pivot_root", "detach old root", "sethostname", "write id map")):
        return mount_refusal(err)
    return ""


def _native() -> Any:
    """The C extension, which holds the probes (cffi: the one FFI our own code uses)."""
    try:
        from isolation import _native
    except ImportError as exc:
        from isolation.errors import IsolationUnavailable

        raise IsolationUnavailable(
            f"isolation's C extension is not built ({exc}), and it probes this host; "
            "reinstall with `pip install .` (needs gcc and the Python headers)"
        ) from None
    return _native


def _probe_unshare() -> tuple[bool, str]:
    native = _native()
    fork_err = native.ffi.new("int *")
    code = int(native.lib.iso_probe_userns(fork_err))  # a forked child's unshare(CLONE_NEWUSER), as its exit code
    if fork_err[0]:
        from isolation.errors import SandboxSetupError

        err = int(fork_err[0])
        raise SandboxSetupError(
            f"cannot fork to check for user namespaces: {os.strerror(err)}", step="fork", errno=err
        )
    if code == 0:
        return True, "user namespaces available"
    return False, userns_refusal(code if code > 0 else 0)


def userns_status() -> tuple[bool, str]:
    """(usable, reason). Probed by forking a child that unshares a user namespace;
    the answer is kept for the process. A failure to fork raises SandboxSetupError
    (naming RLIMIT_NPROC) and is checked again on the next call."""
    global _status
    with _status_lock:
        if _status is None:
            limit = _read(_MAX_USERNS)
            if limit == "0" or (_read(_DEBIAN_CLONE) == "0" and os.geteuid() != 0):
                _status = (False, userns_refusal(errno.EPERM))
            else:
                _status = _probe_unshare()
        return _status


def seccomp_status() -> tuple[bool, str]:
    """(usable, reason): whether seccomp(2) answers here. Asks it which actions the
    kernel supports (SECCOMP_GET_ACTION_AVAIL): nothing is loaded, and a filter
    that refuses seccomp(2) or a kernel without it both show."""
    err = int(_native().lib.iso_probe_seccomp())  # for SECCOMP_RET_KILL_PROCESS, which the filters use
    if err == 0:
        return True, "seccomp filters available"
    return False, seccomp_refusal(err)


def landlock_status() -> tuple[int, str]:
    """(ABI, reason): the kernel's Landlock ABI, 0 with the cause and fix when unusable."""
    abi = int(_native().lib.iso_landlock_abi())  # the ABI, or -errno
    if abi > 0:
        return abi, f"Landlock ABI {abi}"
    return 0, landlock_refusal(-abi)


def forget() -> None:
    """Probe again on the next call (after a sandbox failed to start)."""
    global _status
    with _status_lock:
        _status = None
