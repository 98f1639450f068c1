"""The syscall filter against the real kernel: every denied syscall, issued raw inside a sandbox.

Each probe calls `syscall()` through ctypes from /usr/bin/python3 with
arguments the kernel itself would refuse with something other than the
filter's answer (EINVAL, EBADF, EFAULT, ENOENT, or success), so a control
with the filter off shows the probe can tell the difference. Inside the
sandbox (uid 65534, no capabilities) some syscalls fail their capability
check with EPERM before looking at the arguments; their control moves to the
host, in a user+mount+pid namespace with capabilities, or as real root.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
from commands import PYTHON

import isolation
from isolation import IsolationPolicy
from isolation.seccomp import compile_profile, syscall_number
from isolation.seccomp_profile import CLONE_NAMESPACE_FLAGS, DEFAULT_RULES, TIOCLINUX, TIOCSETD, TIOCSTI

pytestmark = pytest.mark.security

X86_64 = platform.machine() == "x86_64"

# Runs inside the sandbox: each spec in a forked child (new session, so a
# probe never touches the caller's terminal), result as JSON on stdout.
PROBE_SRC = r"""
import ctypes, errno, json, mmap, os, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
keep = []

def arg(a):
    if isinstance(a, int):
        return ctypes.c_long(a)
    kind, _, val = a.partition(":")
    buf = ctypes.create_string_buffer(val.encode()) if kind == "s" else ctypes.create_string_buffer(int(val))
    keep.append(buf)
    return ctypes.c_long(ctypes.addressof(buf))

def i386_getpid():
    # mov eax, 20 (getpid in the i386 table); int 0x80; ret
    m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))
    keep.append(m)
    return ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()

def call(spec):
    if spec["nr"] == "i386":
        ret = i386_getpid()
        return ret, (-ret if -4096 < ret < 0 else 0)
    ret = libc.syscall(ctypes.c_long(spec["nr"]), *[arg(a) for a in spec["args"]])
    return ret, (ctypes.get_errno() if ret == -1 else 0)

def run_one(spec):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setsid()
            me = os.getpid()
            ret, err = call(spec)
            if os.getpid() != me:  # the new process of a clone that succeeded
                os._exit(0)
            os.write(w, json.dumps({"ret": ret, "errno": errno.errorcode.get(err, str(err)) if err else None}).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return json.loads(b"".join(chunks) or b'{"lost": true}')

print(json.dumps({s["id"]: run_one(s) for s in json.loads(sys.argv[1])}))
"""

NOWHERE = "s:/nonexistent-isolation-probe"
CLONE_THREAD = 0x00010000  # without CLONE_SIGHAND: EINVAL before any namespace or capability check
AF_PACKET, AF_VSOCK, SOCK_RAW, SOCK_STREAM = 17, 40, 3, 1
ADDR_NO_RANDOMIZE = 0x0040000
HIGH = 1 << 32  # set in the register, dropped by the kernel for int arguments
O_CREAT_WRONLY = 0o101
S_IFREG = 0o100000


@attrs.frozen
class Probe:
    """`expect`: errno name under the filter, or "SIGSYS". `control`: whether a filter-off run must differ."""

    id: str
    syscall: str | None
    args: tuple[int | str, ...] = ()
    expect: str = "EPERM"
    control: bool = True
    nr: int | str | None = None

    def spec(self) -> dict[str, Any]:
        nr = self.nr if self.nr is not None else syscall_number(str(self.syscall))
        return {"id": self.id, "nr": nr, "args": list(self.args)}


def _p(syscall: str, *args: int | str, **kw: Any) -> Probe:
    return Probe(kw.pop("id", syscall), syscall, args, **kw)


PROBES: dict[str, tuple[Probe, ...]] = {
    "namespaces": (
        _p("unshare", 0x1),
        _p("unshare", 0x10000000, id="unshare-CLONE_NEWUSER", control=False),
        _p("setns", -1, 0),
        *(
            _p("clone", flag | CLONE_THREAD, 0, 0, 0, 0, id=f"clone-{name}")
            for name, flag in CLONE_NAMESPACE_FLAGS.items()
        ),
        _p("clone3", 0, 0, expect="ENOSYS"),
    ),
    "mounts": (
        _p("mount", "s:none", NOWHERE, "s:tmpfs", 0, 0),
        _p("umount2", "s:/", 0xFFFF0000),
        _p("pivot_root", NOWHERE, NOWHERE),
        _p("chroot", NOWHERE),
        _p("open_tree", -100, "s:/", 0x80000000),
        _p("open_tree_attr", -100, "s:/", 0x80000000, 0, 0),
        _p("move_mount", -1, "s:", -1, "s:", 0xFFFFFFFF),
        _p("fsopen", "s:tmpfs", 0xFFFFFFFF),
        _p("fsconfig", -1, 0xFFFF, 0, 0, 0),
        _p("fsmount", -1, 0xFFFFFFFF, 0),
        _p("fspick", -1, "s:", 0xFFFFFFFF),
        _p("mount_setattr", -1, "s:", 0xFFFFFFFF, 0, 0),
    ),
    "kernel": (
        _p("bpf", 9999, 0, 0),
        _p("perf_event_open", 0, 0, -1, -1, 0xFFFFFFFF),
        _p("userfaultfd", 0xFFFFFFFF),
        _p("io_uring_setup", 0, 0),
        _p("io_uring_enter", -1, 0, 0, 0xFFFFFFFF, 0, 0),
        _p("io_uring_register", -1, 0, 0, 0),
        _p("lookup_dcookie", 0, 0, 0),
        _p("fanotify_init", 0x200, 0),  # FAN_REPORT_FID: allowed unprivileged since Linux 5.13
        _p("modify_ldt", 99, 0, 0),
        _p("uselib", 0),
        _p("ustat", 0, 0),
        _p("sysfs", 99),
        _p("_sysctl", 0),
    ),
    "keys": (_p("keyctl", 9999), _p("add_key", 0, 0, 0, 0, 0), _p("request_key", 0, 0, 0, 0)),
    "host": (
        _p("kexec_load", 0, 0, 0, 0xFFFFFFFF),
        _p("kexec_file_load", -1, -1, 0, 0, 0xFFFFFFFF),
        _p("init_module", 0, 0, 0),
        _p("finit_module", -1, 0, 0xFFFFFFFF),
        _p("delete_module", 0, 0),
        _p("reboot", 0, 0, 0, 0),  # bad magic: EINVAL even for root
        _p("swapon", 0, 0),
        _p("swapoff", 0),
        _p("acct", NOWHERE),  # never acct(NULL): as root that would switch accounting off
        _p("syslog", 9999, 0, 0),
        _p("quotactl", 0, 0, 0, 0),
        _p("quotactl_fd", -1, 0, 0, 0),
        _p("vhangup"),  # the probe has no controlling terminal (setsid)
        _p("iopl", 4),
        _p("ioperm", 0x10000, 1, 1),
    ),
    "time": (
        _p("settimeofday", 8, 0),  # unmapped pointer: EFAULT before the capability check, for root too
        _p("clock_settime", 9999, 0),
        _p("clock_adjtime", 9999, 0),
        _p("adjtimex", 0),
    ),
    "handles": (_p("open_by_handle_at", -1, 0, 0), _p("name_to_handle_at", -1, "s:", 0, 0, 0xFFFFFFFF)),
    "process": (
        _p("ptrace", 9999, 0, 0, 0),
        _p("process_vm_readv", 0, 0, 0, 0, 0, 1),
        _p("process_vm_writev", 0, 0, 0, 0, 0, 1),
        _p("kcmp", 0, 0, 99, 0, 0),
        _p("pidfd_getfd", -1, 0, 1),
        _p("process_madvise", -1, 0, 0, 0, 1),
        _p("move_pages", 0, 0, 0, 0, 0, 0xFFFFFFFF),
        _p("migrate_pages", -1, 0, 0, 0),
        _p("personality", ADDR_NO_RANDOMIZE, id="personality-ADDR_NO_RANDOMIZE"),
        _p("personality", HIGH | ADDR_NO_RANDOMIZE, id="personality-high-bits"),
    ),
    "setid": (
        _p("chmod", NOWHERE, 0o4755),
        _p("fchmod", -1, 0o4755),
        _p("fchmodat", -100, NOWHERE, 0o2755),
        _p("fchmodat2", -100, NOWHERE, 0o6755, 0),
        _p("creat", NOWHERE, 0o4755),
        _p("open", NOWHERE, O_CREAT_WRONLY, 0o4755),
        _p("openat", -100, NOWHERE, O_CREAT_WRONLY, 0o2755),
        _p("mknod", NOWHERE, S_IFREG | 0o4755, 0),
        _p("mknodat", -100, NOWHERE, S_IFREG | 0o2755, 0),
        _p("openat2", -100, NOWHERE, 0, 0, expect="ENOSYS"),
    ),
    "tty": (
        _p("ioctl", -1, TIOCSTI, 0, id="ioctl-TIOCSTI"),
        _p("ioctl", -1, HIGH | TIOCSTI, 0, id="ioctl-TIOCSTI-high-bits"),
        _p("ioctl", -1, TIOCLINUX, 0, id="ioctl-TIOCLINUX"),
        _p("ioctl", -1, HIGH | TIOCLINUX, 0, id="ioctl-TIOCLINUX-high-bits"),
        _p("ioctl", -1, TIOCSETD, 0, id="ioctl-TIOCSETD"),
    ),
    "sockets": (
        _p("socket", AF_PACKET, SOCK_RAW, 0, id="socket-AF_PACKET", expect="EAFNOSUPPORT"),
        _p("socket", HIGH | AF_PACKET, SOCK_RAW, 0, id="socket-AF_PACKET-high-bits", expect="EAFNOSUPPORT"),
        _p("socket", AF_VSOCK, SOCK_STREAM, 0, id="socket-AF_VSOCK", expect="EAFNOSUPPORT", control=False),
        _p("socketpair", AF_PACKET, SOCK_RAW, 0, "b:8", expect="EAFNOSUPPORT"),
    ),
}

# Allowed values next to denied ones: the argument masks must not over-block.
ALLOWED: tuple[tuple[Probe, str | None], ...] = (
    (_p("personality", 0xFFFFFFFF, id="personality-query"), None),
    (_p("personality", 0x0008, id="personality-PER_LINUX32"), None),
    (_p("ioctl", -1, 0x5413, 0, id="ioctl-TIOCGWINSZ"), "EBADF"),
    (_p("ioctl", -1, 0x5401, 0, id="ioctl-TCGETS"), "EBADF"),
    (_p("socket", 1, SOCK_STREAM, 0, id="socket-AF_UNIX"), None),
    (_p("socket", 2, SOCK_STREAM, 0, id="socket-AF_INET"), None),
    (_p("socket", 10, SOCK_STREAM, 0, id="socket-AF_INET6"), None),
    (_p("socket", 16, SOCK_RAW, 0, id="socket-AF_NETLINK"), None),
    (_p("socketpair", 1, SOCK_STREAM, 0, "b:8", id="socketpair-AF_UNIX"), None),
    (_p("clone", 17, 0, 0, 0, 0, id="clone-fork"), None),  # SIGCHLD only: a plain fork
    (_p("chmod", NOWHERE, 0o1777, id="chmod-sticky"), "ENOENT"),  # modes without set-id bits pass
    (_p("open", NOWHERE, O_CREAT_WRONLY, 0o755, id="open-create-0755"), "EROFS"),
    (_p("openat", -100, NOWHERE, 0, 0, id="openat-read"), "ENOENT"),
)

ARCH_PROBES: tuple[Probe, ...] = (
    Probe("x32-getpid", None, expect="SIGSYS", nr=0x40000000 | 39),
    Probe("i386-int80-getpid", None, expect="SIGSYS", nr="i386"),
)

UNFILTERED = IsolationPolicy(seccomp="none", unsafe_no_seccomp=True)


def outcome(result: dict[str, Any]) -> str:
    """One word per result: the errno name, SIGSYS-style signal names, or "ok"."""
    if "signal" in result:
        return "SIGSYS" if result["signal"] == 31 else f"signal {result['signal']}"
    return str(result["errno"]) if result.get("errno") else "ok"


def run_probes(probes: Sequence[Probe], *, backend: str, policy: IsolationPolicy | None = None) -> dict[str, str]:
    argv = [PYTHON, "-c", PROBE_SRC, json.dumps([p.spec() for p in probes])]
    res = isolation.run(argv, policy, backend=backend, timeout=120, unsafe_no_isolation=backend == "none")
    assert res.returncode == 0, res.stderr.decode()
    return {k: outcome(v) for k, v in json.loads(res.stdout).items()}


def run_on_host(probes: Sequence[Probe], *, userns: bool) -> dict[str, str]:
    """The control outside any sandbox and filter: as this user, or with namespace capabilities."""
    argv = [PYTHON, "-c", PROBE_SRC, json.dumps([p.spec() for p in probes])]
    if userns:
        unshare = shutil.which("unshare")
        assert unshare is not None, "util-linux unshare is needed for the namespace control"
        argv = [unshare, "--user", "--map-root-user", "--mount", "--pid", "--fork", "--", *argv]
    res = isolation.run(argv, backend="none", unsafe_no_isolation=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    return {k: outcome(v) for k, v in json.loads(res.stdout).items()}


def probe(pid: str) -> Probe:
    return next(p for group in PROBES.values() for p in group if p.id == pid)


def test_every_default_rule_has_a_probe() -> None:
    probed = {p.syscall for group in PROBES.values() for p in group if p.control}
    assert {r.syscall for r in DEFAULT_RULES} <= probed
    assert set(PROBES) == {r.group for r in DEFAULT_RULES}


@pytest.mark.parametrize("group", sorted(PROBES))
def test_denied_group_answers_with_the_filters_errno(backend: str, group: str) -> None:
    got = run_probes(PROBES[group], backend=backend)
    assert got == {p.id: p.expect for p in PROBES[group]}


@pytest.mark.parametrize("group", sorted(PROBES))
def test_control_without_the_filter_the_same_probes_get_another_answer(backend: str, group: str) -> None:
    """Filter off, same sandbox; where the sandbox's missing capabilities already
    answer EPERM, the control moves to the host with namespace capabilities, then to root."""
    probes = [p for p in PROBES[group] if p.control]
    pending = {p.id: p.expect for p in probes}
    seen: dict[str, list[str]] = {p.id: [] for p in probes}
    stages: list[tuple[str, Any]] = [
        ("sandbox", lambda ps: run_probes(ps, backend=backend, policy=UNFILTERED)),
        ("host user namespace", lambda ps: run_on_host(ps, userns=True)),
    ]
    if os.geteuid() == 0:
        stages.append(("host root", lambda ps: run_on_host(ps, userns=False)))
    for where, run in stages:
        todo = [p for p in probes if p.id in pending]
        if not todo:
            break
        for pid, answer in run(todo).items():
            seen[pid].append(f"{where}: {answer}")
            if answer != pending[pid]:
                del pending[pid]
    if pending and os.geteuid() != 0:
        pytest.skip(f"only real root gets past the kernel's own check for {', '.join(pending)}")
    assert not pending, {pid: seen[pid] for pid in pending}


def test_allowed_neighbours_are_not_blocked(backend: str) -> None:
    got = run_probes([p for p, _ in ALLOWED], backend=backend)
    assert got == {p.id: expect or "ok" for p, expect in ALLOWED}


@pytest.mark.skipif(not X86_64, reason="x32 and i386 are x86_64's other ABIs")
def test_foreign_abis_are_killed(backend: str) -> None:
    assert run_probes(ARCH_PROBES, backend=backend) == {"x32-getpid": "SIGSYS", "i386-int80-getpid": "SIGSYS"}
    control = run_probes(ARCH_PROBES, backend=backend, policy=UNFILTERED)
    assert control["x32-getpid"] in ("ENOSYS", "ok")  # kernels without CONFIG_X86_X32_ABI say ENOSYS
    assert control["i386-int80-getpid"] in ("ok", "ENOSYS")  # ok: a pid from the i386 table


def test_sandbox_reports_the_filter_it_loaded(backend: str) -> None:
    filt = compile_profile("default")
    res = isolation.run(["sh", "-c", "grep -E '^Seccomp(_filters)?:' /proc/self/status"], backend=backend)
    assert res.returncode == 0, res.stderr
    status = dict(line.split(":\t") for line in res.stdout.decode().splitlines())
    assert status["Seccomp"] == "2" and int(status["Seccomp_filters"]) >= 1
    assert f"seccomp:default:sha256={filt.digest}" in res.enforced
    off = isolation.run(["sh", "-c", "grep '^Seccomp:' /proc/self/status"], UNFILTERED, backend=backend)
    assert not any(e.startswith("seccomp:") for e in off.enforced)


def test_debug_extension_allows_ptrace_only(backend: str) -> None:
    policy = IsolationPolicy(seccomp="debug")
    ids = ("ptrace", "personality-ADDR_NO_RANDOMIZE", "process_vm_readv", "kcmp", "unshare")
    got = run_probes([probe(i) for i in ids], backend=backend, policy=policy)
    assert got == {
        "ptrace": "ESRCH",
        "personality-ADDR_NO_RANDOMIZE": "ok",
        "process_vm_readv": "EINVAL",
        "kcmp": "EPERM",
        "unshare": "EPERM",
    }


def test_errno_names_used_by_probes_exist() -> None:
    for group in PROBES.values():
        for p in group:
            assert p.expect == "SIGSYS" or hasattr(errno, p.expect)
