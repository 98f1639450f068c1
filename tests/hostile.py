"""Hostile hosts, simulated for real: run code where the kernel refuses what a
sandbox needs, the way real hosts refuse it (issue 11, section B).

Each host is built by this file run as a launcher (``python tests/hostile.py
HOST -- ARGV...``): it changes its own process as the host would be, then
execs ARGV (or, for the nested hosts, runs ARGV inside a real sandbox of the
given backend). Nothing is pretended: the code under test meets the kernel's
real refusals.

- ``control``: nothing refused (the launcher path itself, for controls).
- ``userns-max0``: a child user namespace (the caller mapped to itself) whose
  ``user.max_user_namespaces`` is 0; creating a user namespace fails (ENOSPC).
- ``docker-seccomp``: a filter like Docker's default profile for a container
  without CAP_SYS_ADMIN: unshare, setns, mount (and the new mount API),
  umount2, pivot_root and clone with any CLONE_NEW* flag fail with EPERM,
  clone3 with ENOSYS (so libc falls back to clone).
- ``landlock-eperm`` / ``landlock-enosys`` / ``landlock-eopnotsupp``: the
  Landlock syscalls fail with EPERM (a filter), ENOSYS (kernel without it),
  EOPNOTSUPP (built in but not enabled at boot: ``lsm=``).
- ``seccomp-denied``: seccomp(2) and prctl(PR_SET_SECCOMP) fail with EPERM.
- ``apparmor-userns``: Ubuntu 23.10+ with
  ``kernel.apparmor_restrict_unprivileged_userns=1``: a user namespace can be
  created and mapped, but what would need its capabilities (mount and the new
  mount API, pivot_root, sethostname) is refused: mounts with EACCES (AppArmor's
  mount mediation), the rest with EPERM.
- ``nested-bwrap`` / ``nested-native``: inside a sandbox of that backend
  (policy: the default plus the running Python and this checkout, read-only).

Every host can be built in both lanes (root and unprivileged); `unavailable`
says precisely why one cannot, should that ever be the case.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

HERE = os.path.abspath(__file__)
CHECKOUT = os.path.dirname(os.path.dirname(HERE))

# Exit status of a launcher that could not build its host: never a result.
LAUNCHER_FAILED = 86
_MARK = "hostile launcher:"

SECCOMP_HOSTS = (
    "docker-seccomp",
    "landlock-eperm",
    "landlock-enosys",
    "landlock-eopnotsupp",
    "seccomp-denied",
    "apparmor-userns",
)
NESTED_HOSTS = ("nested-bwrap", "nested-native")
HOSTS = ("control", "userns-max0", *SECCOMP_HOSTS, *NESTED_HOSTS)
HOSTILE_HOSTS = HOSTS[1:]

_CLONE_NEWUSER = 0x10000000
_CLONE_NEW = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": _CLONE_NEWUSER,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
_MOUNT_SYSCALLS = (
    "mount",
    "umount2",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
)
_LANDLOCK_SYSCALLS = ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self")
_PR_SET_SECCOMP = 22

# (syscall, errno, argument-0 mask or None): the rules of each seccomp host.
Rules = tuple[tuple[str, int, int | None], ...]


def _rules(host: str) -> Rules:
    if host == "docker-seccomp":
        return (
            *((name, errno.EPERM, None) for name in (*_MOUNT_SYSCALLS, "unshare", "setns", "pivot_root")),
            *(("clone", errno.EPERM, bit) for bit in _CLONE_NEW.values()),
            ("clone3", errno.ENOSYS, None),
        )
    if host.startswith("landlock-"):
        err = {"eperm": errno.EPERM, "enosys": errno.ENOSYS, "eopnotsupp": errno.EOPNOTSUPP}[host.split("-", 1)[1]]
        return tuple((name, err, None) for name in _LANDLOCK_SYSCALLS)
    if host == "seccomp-denied":
        return (("seccomp", errno.EPERM, None), ("prctl", errno.EPERM, -_PR_SET_SECCOMP))
    if host == "apparmor-userns":
        return (
            *((name, errno.EACCES, None) for name in _MOUNT_SYSCALLS),
            ("pivot_root", errno.EPERM, None),
            ("sethostname", errno.EPERM, None),
        )
    raise ValueError(host)


# -- the launcher's side --------------------------------------------------------


def _fail(msg: str) -> None:
    print(f"{_MARK} {msg}", file=sys.stderr, flush=True)
    os._exit(LAUNCHER_FAILED)


def _load_seccomp(rules: Rules) -> None:
    """Load an allow-by-default filter with libseccomp (which sets no_new_privs)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(
        """
        typedef void *scmp_filter_ctx;
        struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a; uint64_t datum_b; };
        scmp_filter_ctx seccomp_init(uint32_t def_action);
        int seccomp_syscall_resolve_name(const char *name);
        int seccomp_rule_add_exact_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                                         unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
        int seccomp_load(scmp_filter_ctx ctx);
        """
    )
    lib = ffi.dlopen("libseccomp.so.2")
    ctx = lib.seccomp_init(0x7FFF0000)  # SCMP_ACT_ALLOW
    if ctx == ffi.NULL:
        _fail("seccomp_init failed")
    for name, err, arg0 in rules:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            _fail(f"libseccomp does not know {name}")
        action = 0x00050000 | err  # SCMP_ACT_ERRNO(err)
        if arg0 is None:
            rc = lib.seccomp_rule_add_exact_array(ctx, action, nr, 0, ffi.NULL)
        else:
            # arg0 > 0: refused when any bit of the mask is set; arg0 < 0: when arg0 == -value.
            cmp = ffi.new("struct scmp_arg_cmp[1]")
            if arg0 > 0:
                cmp[0] = (0, 7, arg0, arg0)  # SCMP_CMP_MASKED_EQ
            else:
                cmp[0] = (0, 4, -arg0, 0)  # SCMP_CMP_EQ
            rc = lib.seccomp_rule_add_exact_array(ctx, action, nr, 1, cmp)
        if rc != 0:
            _fail(f"seccomp rule for {name}: {os.strerror(-rc)}")
    rc = lib.seccomp_load(ctx)
    if rc != 0:
        _fail(f"seccomp_load: {os.strerror(-rc)}")


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        _fail(f"cannot write {text.strip()!r} to {path}: {exc.strerror}")


def _enter_userns_max0() -> None:
    """Become the caller again inside a child user namespace, then forbid more.

    The maps are written by a helper left in the parent namespace: only there
    does a root caller hold the CAP_SETUID a map of more than its own id needs.
    """
    uid, gid = os.geteuid(), os.getegid()
    me = os.getpid()
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    helper = os.fork()
    if helper == 0:  # pragma: no cover - the helper: write the maps, then leave
        os.close(ready_w)
        os.close(done_r)
        if os.read(ready_r, 1) != b"u":
            os._exit(1)
        if uid == 0:  # the root lane: every id maps to itself, as on the host
            _write(f"/proc/{me}/uid_map", "0 0 4294967295\n")
            _write(f"/proc/{me}/gid_map", "0 0 4294967295\n")
        else:
            _write(f"/proc/{me}/setgroups", "deny\n")
            _write(f"/proc/{me}/uid_map", f"{uid} {uid} 1\n")
            _write(f"/proc/{me}/gid_map", f"{gid} {gid} 1\n")
        os.write(done_w, b"m")
        os._exit(0)
    os.close(ready_r)
    os.close(done_w)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER) != 0:
        _fail(f"unshare(CLONE_NEWUSER): {os.strerror(ctypes.get_errno())}")
    os.write(ready_w, b"u")
    mapped = os.read(done_r, 1) == b"m"
    os.waitpid(helper, 0)
    os.close(ready_w)
    os.close(done_r)
    if not mapped:
        _fail("the helper could not write the id maps")
    # The namespace's owner holds CAP_SYS_RESOURCE in it: its own ucount limits are writable.
    _write("/proc/sys/user/max_user_namespaces", "0\n")


def _run_nested(backend: str, argv: list[str]) -> None:
    sys.path.insert(0, CHECKOUT)
    import isolation

    policy = isolation.IsolationPolicy(env_allowlist=(*isolation.IsolationPolicy().env_allowlist, "PYTHONPATH"))
    policy = policy.with_python().with_read(CHECKOUT)
    try:
        res = isolation.run(argv, policy, backend=backend, stdout=1, stderr=2, timeout=600)
    except isolation.IsolationError as exc:
        _fail(f"the outer {backend} sandbox did not start: {type(exc).__name__}: {exc}")
    if res.outcome != "exited":
        _fail(f"the outer {backend} sandbox ended with outcome {res.outcome}")
    os._exit(res.returncode)


def main(args: list[str]) -> None:
    if len(args) < 3 or args[1] != "--" or args[0] not in HOSTS:
        _fail(f"usage: hostile.py {{{','.join(HOSTS)}}} -- ARGV...")
    host, argv = args[0], args[2:]
    if host == "userns-max0":
        _enter_userns_max0()
    elif host in SECCOMP_HOSTS:
        _load_seccomp(_rules(host))
    elif host in NESTED_HOSTS:
        _run_nested(host.split("-", 1)[1], argv)
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        _fail(f"exec {argv[0]}: {exc.strerror}")


# -- the test's side --------------------------------------------------------------


def unavailable(host: str) -> str | None:
    """Why `host` cannot be simulated in this lane, or None. Every host needs
    only what both lanes have (user namespaces, seccomp, both backends)."""
    if host not in HOSTS:
        raise ValueError(host)
    return None


def launch(
    host: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` on the simulated `host`; raise if the host itself could not be built
    (so a broken simulation is never mistaken for the code's answer)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, full_env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, HERE, host, "--", *argv],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        cwd="/",
    )
    if proc.returncode == LAUNCHER_FAILED and _MARK in proc.stderr:
        raise RuntimeError(f"cannot simulate {host}: {proc.stderr.strip()}")
    return proc


def python(host: str, code: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet (this checkout importable) on `host`."""
    return launch(host, [sys.executable, "-c", code], **kw)  # type: ignore[arg-type]


def cli(host: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m isolation ARGS`` on `host`."""
    return launch(host, [sys.executable, "-m", "isolation", *args], **kw)  # type: ignore[arg-type]


if __name__ == "__main__":
    main(sys.argv[1:])
