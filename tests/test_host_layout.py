"""The native backend on a host without user namespaces (the best-effort host layout),
and how tests simulate such hosts.

Every hole the host layout could leave is tried inside a real run and must fail or be
named in `RunResult.missing`; each probe has a control where the same probe succeeds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from commands import PYTHON
from conftest import HOST_LAYOUT_UID

import isolation
from isolation import IsolationPolicy
from isolation.seccomp import compile_profile, syscall_number

pytestmark = pytest.mark.security

# -- test switches are not reachable from production (issue 11, B.15) -----------------

LAYERS = """
import errno, json, os, stat
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
def whiteout():  # Landlock's make_char governs even a 0:0 node, which needs no capability
    p = "/tmp/whiteout-%d" % os.getpid()
    try:
        os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    except OSError as e:
        return errno.errorcode[e.errno]
    os.unlink(p)
    return "ok"
open("/tmp/written", "w").write("x")  # an unlisted /tmp rule would refuse this
print(json.dumps({"seccomp": status["Seccomp"].strip(), "whiteout": whiteout(), "usr": len(os.listdir("/usr")) > 0}))
"""
OLD_SWITCHES = {
    "_ISOLATION_TEST_PRETEND_MISSING": "userns,landlock,seccomp,landlock-abi=0",
    "_ISOLATION_TEST_LANDLOCK_UNLISTED": "/tmp,/usr,/work,/proc,/dev",
}


@pytest.mark.parametrize("enforcement", ["strict", "best_effort"])
def test_the_old_test_variables_switch_nothing_off(
    monkeypatch: pytest.MonkeyPatch, host_lacking: Callable[[str], None], enforcement: str
) -> None:
    for name, value in OLD_SWITCHES.items():
        monkeypatch.setenv(name, value)
    res = isolation.run([PYTHON, "-c", LAYERS], timeout=60, enforcement=enforcement)
    assert res.returncode == 0 and res.backend == "native", res  # auto still finds every layer
    facts = json.loads(res.stdout)
    assert facts == {"seccomp": "2", "whiteout": "EACCES", "usr": True}, facts
    assert any(e.startswith("landlock:abi=") for e in res.enforced)
    assert any(e.startswith("seccomp:") for e in res.enforced)
    assert "namespace:user" in res.enforced and not any(m.startswith(("landlock", "seccomp")) for m in res.missing)
    # Controls: the probes see each layer go when a test takes it away in-process.
    host_lacking("seccomp")
    res = isolation.run([PYTHON, "-c", LAYERS], backend="native", timeout=60, enforcement="best_effort")
    assert json.loads(res.stdout)["seccomp"] == "0" and "seccomp" in res.missing
    host_lacking("landlock")
    res = isolation.run([PYTHON, "-c", LAYERS], backend="native", timeout=60, enforcement="best_effort")
    assert json.loads(res.stdout)["whiteout"] == "ok" and "landlock:fs" in res.missing


# -- the host layout's holes (issue 11, B.9) -------------------------------------------

ROOT = os.geteuid() == 0


def run_probe(code: str, policy: IsolationPolicy | None = None, *args: str) -> isolation.RunResult:
    res = isolation.run([PYTHON, "-c", PROBE_HELPERS + code, *args], policy, backend="native", timeout=60,
                        enforcement="best_effort")
    assert res.returncode == 0, (res.stderr, res)
    assert "namespace:user" in res.missing and "namespace:mount" in res.missing  # the host layout ran
    return res


def host_probe(code: str, *args: str, user: int | None = None, cwd: str | None = None) -> str:
    """The same probe in a plain host process (the control)."""
    user = user if ROOT else None  # only root may run it as another user
    out = subprocess.run([PYTHON, "-c", PROBE_HELPERS + code, *args], capture_output=True, timeout=60, check=True,
                         user=user, cwd=cwd)
    return out.stdout.decode()


PROBE_HELPERS = """
import errno, json, os, socket, sys
def t(f, *a):
    try:
        f(*a)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
"""

PROC_WRITES = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname", "/proc/self/comm"]
# Opened for writing, never written: the open is what Landlock and the file's mode decide.
OPEN_FOR_WRITE = "print(json.dumps({p: t(lambda p: os.close(os.open(p, os.O_WRONLY)), p) for p in sys.argv[1:]}))"


def test_nothing_under_proc_is_writable(host_lacking: Callable[[str], None]) -> None:
    host_lacking("userns")
    inside = json.loads(run_probe(OPEN_FOR_WRITE, None, *PROC_WRITES).stdout)
    assert set(inside.values()) == {"EACCES"}, inside
    # Control: a plain process of the caller opens what its user may write (as root: all of them).
    outside = json.loads(host_probe(OPEN_FOR_WRITE, *PROC_WRITES))
    assert outside["/proc/self/comm"] == "ok"
    if ROOT:
        assert outside["/proc/sys/kernel/core_pattern"] == outside["/proc/sys/kernel/hostname"] == "ok", outside


IDENTITY = """
st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print(json.dumps({k: st[k].split() for k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd",
                                             "CapAmb", "NoNewPrivs")}))
"""


def test_ids_and_capabilities_are_claimed_exactly(host_lacking: Callable[[str], None]) -> None:
    host_lacking("userns")
    res = run_probe(IDENTITY)
    facts = json.loads(res.stdout)
    held = ("CapInh", "CapPrm", "CapEff", "CapAmb")
    assert all(int(facts[k][0], 16) == 0 for k in held), facts
    assert facts["NoNewPrivs"] == ["1"] and "no_new_privs" in res.enforced
    if ROOT:  # the command runs as 65534 with no groups and no capability in any set
        assert facts["Uid"] == ["65534"] * 4 and facts["Gid"] == ["65534"] * 4 and facts["Groups"] == []
        assert int(facts["CapBnd"][0], 16) == 0
        assert {"ids:65534", "capabilities:none"} <= set(res.enforced)
        assert not {"ids:65534", "capabilities:bounding"} & set(res.missing)
    else:  # it stays the caller, whose bounding set it cannot drop: claimed exactly, the rest missing
        assert facts["Uid"] == [str(os.getuid())] * 4
        assert int(facts["CapBnd"][0], 16) != 0
        assert "capabilities:held=none" in res.enforced and "capabilities:none" not in res.enforced
        assert {"ids:65534", "capabilities:bounding"} <= set(res.missing)
    # Control: the namespaced sandbox claims and has every set empty.
    host_lacking("")
    ns = isolation.run([PYTHON, "-c", PROBE_HELPERS + IDENTITY], backend="native", timeout=60)
    assert "capabilities:none" in ns.enforced and int(json.loads(ns.stdout)["CapBnd"][0], 16) == 0


METADATA = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def raw(nr, path, name):  # (AT_FDCWD, path, 0, name, NULL, 0): refused by seccomp, or a bad argument
    if libc.syscall(ctypes.c_long(nr), ctypes.c_long(-100), path.encode(), ctypes.c_long(0), name, None, 0) < 0:
        raise OSError(ctypes.get_errno(), "raw")
target, readable, = sys.argv[1:3]
out = {
    "chmod": t(os.chmod, target, 0o666),
    "lchown": t(os.lchown, target, -1, -1),
    "chown": t(os.chown, target, -1, -1),
    "utime": t(os.utime, target, (0, 0)),
    "utime_now": t(os.utime, target),
    "chmod_dirfd": t(lambda: os.chmod(os.path.basename(target), 0o666,
                                      dir_fd=os.open(os.path.dirname(target), os.O_PATH))),
    "setxattr": t(os.setxattr, target, "user.isolation", b"1"),  # ACLs go the same way
    "removexattr": t(os.removexattr, target, "user.isolation"),
    "truncate": t(os.truncate, target, 0),
    "setxattrat": t(raw, 463, target, b"user.isolation"),  # newer than libc: raw, arguments aside
    "file_setattr": t(raw, 469, target, None),
}
fd = os.open(readable, os.O_RDONLY)
out["fchmod_readable"] = t(os.fchmod, fd, 0o666)
out["futimens_readable"] = t(os.utime, fd, (0, 0))
open("mine", "w").close()
fd = os.open("mine", os.O_RDONLY)
out["fchmod_work"] = t(os.fchmod, fd, 0o750)
out["futimens_work"] = t(os.utime, fd, None)
out["chmod_work"] = t(os.chmod, "mine", 0o700)
print(json.dumps(out))
"""


@pytest.fixture
def callers_dir() -> Iterator[Path]:
    """A directory of the caller's that anyone may enter (mode 0755, under /tmp)."""
    path = Path(tempfile.mkdtemp(prefix="isolation-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_mode_owner_and_times_of_host_files_stay(
    host_layout_dir: str, callers_dir: Path, host_lacking: Callable[[str], None]
) -> None:
    """Landlock does not govern chmod, chown and utime: in the host layout seccomp refuses them by path."""
    # A file outside the policy that the command's own user owns (for a root caller, 65534's):
    # only the seccomp rule stands between it and a new mode.
    outside = Path(host_layout_dir) / "outside"
    outside.write_text("x")
    outside.chmod(0o600)
    if ROOT:
        os.chown(outside, HOST_LAYOUT_UID, HOST_LAYOUT_UID)
    readable = callers_dir / "readable"  # the caller's file the policy lets the command read
    readable.write_text("r")
    readable.chmod(0o644)
    before = {p: (p.stat().st_mode, p.stat().st_mtime_ns) for p in (outside, readable)}
    host_lacking("userns")
    res = run_probe(METADATA, IsolationPolicy().with_read(str(callers_dir)), str(outside), str(readable))
    got = json.loads(res.stdout)
    by_path = ("chmod", "lchown", "chown", "utime", "utime_now", "chmod_dirfd", "chmod_work", "setxattr",
               "removexattr", "truncate", "setxattrat", "file_setattr")
    assert {got[k] for k in by_path} == {"EPERM"}, got
    assert (outside.stat().st_mode, outside.stat().st_mtime_ns) == before[outside]
    assert outside.read_text() == "x" and os.listxattr(outside) == []
    # Through a descriptor: the command's own file in its private /work (the control) ...
    assert got["fchmod_work"] == got["futimens_work"] == "ok", got
    # ... and a file it may read, the caller's: changeable by its owner. A root caller's command
    # runs as 65534 and owns none; anyone else's can, and `missing` names it.
    if ROOT:
        assert got["fchmod_readable"] == got["futimens_readable"] == "EPERM", got
        assert "files:metadata-by-descriptor" not in res.missing
        assert (readable.stat().st_mode, readable.stat().st_mtime_ns) == before[readable]
    else:
        assert got["fchmod_readable"] == "ok" and "files:metadata-by-descriptor" in res.missing
    # Control: a plain process of the same user changes the same file by path.
    host = json.loads(host_probe(METADATA, str(outside), str(readable), user=HOST_LAYOUT_UID, cwd=host_layout_dir))
    assert all(host[k] == "ok" for k in by_path if k not in ("setxattrat", "file_setattr")), host
    assert "EPERM" not in (host["setxattrat"], host["file_setattr"]), host  # they reached the kernel
    assert outside.stat().st_mode & 0o777 == 0o666 and outside.read_text() == ""


@pytest.fixture
def unix_listeners(host_layout_dir: str) -> Iterator[tuple[str, str]]:
    """A stream and a datagram socket at paths the command's user may reach (mode 0666 in a 0755
    directory): a host service such as docker.sock or /dev/log, with nothing but the sandbox in the way."""
    stream_path, dgram_path = os.path.join(host_layout_dir, "svc.sock"), os.path.join(host_layout_dir, "log.sock")
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(stream_path)
    stream.listen(8)
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(dgram_path)
    for p in (stream_path, dgram_path):
        os.chmod(p, 0o666)
    yield stream_path, dgram_path
    stream.close()
    dgram.close()


UNIX_CLIENT = """
stream_path, dgram_path = sys.argv[1:3]
def connect():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(stream_path)
def send_datagram():  # a pair is enough to reach any datagram socket by its path
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.sendto(b"hello", dgram_path)
def stream_pair():
    a, b = socket.socketpair()
    a.sendall(b"x")
    assert b.recv(1) == b"x"
print(json.dumps({"connect": t(connect), "sendto": t(send_datagram), "stream_pair": t(stream_pair)}))
"""


def test_host_unix_sockets_are_unreachable(
    unix_listeners: tuple[str, str], host_lacking: Callable[[str], None]
) -> None:
    host_lacking("userns")
    got = json.loads(run_probe(UNIX_CLIENT, None, *unix_listeners).stdout)
    assert got == {"connect": "EAFNOSUPPORT", "sendto": "EPROTONOSUPPORT", "stream_pair": "ok"}, got
    # Control: a plain process of the command's user reaches both.
    host = json.loads(host_probe(UNIX_CLIENT, *unix_listeners, user=HOST_LAYOUT_UID))
    assert host == {"connect": "ok", "sendto": "ok", "stream_pair": "ok"}, host


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    yield s
    s.close()


def _received(s: socket.socket) -> bool:
    try:
        s.recv(64)
        return True
    except BlockingIOError:
        return False


IP_CLIENT = """
port = int(sys.argv[1])
def udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"out", ("127.0.0.1", port))
print(json.dumps({
    "udp": t(udp),
    "udp6": t(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()),
    "ping": t(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()),
    "mptcp": t(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).close()),  # not TCP to Landlock
    "tcp": t(lambda: socket.socket().close()),
}))
"""


def test_ip_sockets_other_than_tcp_are_refused_without_network(
    udp_listener: socket.socket, host_lacking: Callable[[str], None]
) -> None:
    """No network namespace here, and Landlock governs only TCP: seccomp refuses the rest."""
    port = str(udp_listener.getsockname()[1])
    host_lacking("userns")
    res = run_probe(IP_CLIENT, None, port)
    got = json.loads(res.stdout)
    refused = dict.fromkeys(("udp", "udp6", "ping", "mptcp"), "EACCES")
    assert {k: v for k, v in got.items() if k != "tcp"} == refused, got
    assert got["tcp"] == "ok" and not _received(udp_listener)  # TCP: Landlock's (tested in test_native)
    assert "+tcp-only:" in next(e for e in res.enforced if e.startswith("seccomp:"))
    # Control: with Network the same sandbox sends, as does a plain process.
    res = run_probe(IP_CLIENT, IsolationPolicy(network=True), port)
    assert json.loads(res.stdout)["udp"] == "ok" and _received(udp_listener)
    assert json.loads(host_probe(IP_CLIENT, port))["udp"] == "ok" and _received(udp_listener)


# -- every claim of a host-layout run is observed in it ---------------------------------

CLAIMS_PROBE = """
st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
facts = {k: st[k].split() for k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                    "NoNewPrivs", "Seccomp")}
facts["sid"], facts["pid"] = os.getsid(0), os.getpid()
facts["fds"] = sorted(int(n) for n in os.listdir("/proc/self/fd"))
facts["env"] = sorted(os.environ)
facts["outside"] = t(lambda: open(sys.argv[1]).read())  # not in the policy: Landlock's to refuse
facts["proc_write"] = t(lambda: os.close(os.open("/proc/self/comm", os.O_WRONLY)))
facts["chmod"] = t(os.chmod, ".", 0o700)
print(json.dumps(facts))
"""


@pytest.mark.parametrize("network", [False, True])
def test_every_host_layout_claim_is_observed(
    callers_dir: Path, host_lacking: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, network: bool
) -> None:
    monkeypatch.setenv("ISOLATION_HOST_LAYOUT_SECRET", "s3cret")
    secret = callers_dir / "secret"
    secret.write_text("s")
    secret.chmod(0o644)  # readable by the command's user: only Landlock keeps it out
    host_lacking("userns")
    policy = IsolationPolicy(network=network)
    res = run_probe(CLAIMS_PROBE, policy, str(secret))
    facts = json.loads(res.stdout)
    assert not set(res.enforced) & set(res.missing)
    checked = []
    for claim in res.enforced:
        kind, _, arg = claim.partition(":")
        if claim == f"ids:{HOST_LAYOUT_UID}":
            assert ROOT and facts["Uid"] == [arg] * 4 and facts["Gid"] == [arg] * 4 and facts["Groups"] == []
        elif claim == "capabilities:none":
            assert all(int(facts[k][0], 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"))
        elif claim == "capabilities:held=none":
            assert all(int(facts[k][0], 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"))
        elif claim == "no_new_privs":
            assert facts["NoNewPrivs"] == ["1"]
        elif claim == "new_session":
            assert facts["sid"] == facts["pid"]  # the command leads a session of its own
        elif claim == "fds:closed":
            assert len([fd for fd in facts["fds"] if fd > 2]) <= 1  # the listing's own
        elif claim == "env:cleared":
            sandbox_env = {"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", *policy.env_allowlist}
            assert set(facts["env"]) <= sandbox_env and "ISOLATION_HOST_LAYOUT_SECRET" not in facts["env"]
        elif kind == "landlock":
            assert facts["outside"] == facts["proc_write"] == "EACCES"
        elif kind == "seccomp":
            profile, _, digest = arg.partition(":sha256=")
            expected = compile_profile("default", host_layout=True, network=network)
            assert (profile, digest) == (expected.profile, expected.digest)
            assert facts["Seccomp"] == ["2"] and facts["chmod"] == "EPERM"
        elif claim.startswith("limit:max_output="):
            assert claim.endswith(":runner")
        else:
            raise AssertionError(f"claim {claim!r} has no check here")
        checked.append(claim)
    assert any(c.startswith("landlock:") for c in checked) and any(c.startswith("seccomp:") for c in checked)
    # Control: the same probe in a plain process of the caller sees none of it.
    host = json.loads(host_probe(CLAIMS_PROBE, str(secret), cwd=str(callers_dir)))
    assert host["outside"] == "ok" and host["Seccomp"] == ["0"] and host["NoNewPrivs"] == ["0"]
    assert "ISOLATION_HOST_LAYOUT_SECRET" in host["env"] and host["sid"] != host["pid"]


def test_without_the_filter_the_host_layout_names_what_it_leaves_open(
    unix_listeners: tuple[str, str], udp_listener: socket.socket, host_lacking: Callable[[str], None]
) -> None:
    """A host without seccomp: the holes the host-layout rules close are open, and `missing` says so."""
    host_lacking("userns,seccomp")
    res = run_probe(UNIX_CLIENT, None, *unix_listeners)
    assert json.loads(res.stdout)["connect"] == "ok"  # the probe works: only the filter refused it above
    assert {"seccomp", "files:metadata", "sockets:unix", "network:non-tcp"} <= set(res.missing)
    res = run_probe(IP_CLIENT, None, str(udp_listener.getsockname()[1]))
    assert json.loads(res.stdout)["udp"] == "ok" and _received(udp_listener)
    res = run_probe("print('ok')", IsolationPolicy(network=True))
    assert {"files:metadata", "sockets:unix"} <= set(res.missing) and "network:non-tcp" not in res.missing


# -- in a subprocess: the CLI under the test launcher, and on real hostile hosts ----------

LAUNCHER = str(Path(__file__).with_name("_with_host.py"))
CHECKOUT = str(Path(__file__).resolve().parent.parent)


def _cli_json(argv: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": CHECKOUT}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=full_env, cwd="/")
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def test_the_cli_ignores_the_old_variables_and_the_launcher_simulates() -> None:
    cmd = ["-m", "isolation", "run", "--json", "--best-effort", "--", PYTHON, "-c", "print(1)"]
    res = _cli_json([sys.executable, *cmd], env=OLD_SWITCHES)
    assert res["backend"] == "native" and res["missing"] == [], res
    assert "namespace:user" in res["enforced"]  # type: ignore[operator]
    # Control: the test launcher, in-process, does take user namespaces away.
    res = _cli_json([sys.executable, LAUNCHER, "userns", *cmd[:3], "--backend", "native", *cmd[3:]])
    assert "namespace:user" in res["missing"] and "+host-layout+tcp-only" in str(res["enforced"]), res  # type: ignore[operator]


HOSTILE_RUN = """
import json, sys
import isolation
res = isolation.run(["/usr/bin/python3", "-c", sys.argv[1], *sys.argv[2:]], backend="native",
                    enforcement="best_effort", timeout=60)
print(json.dumps({"rc": res.returncode, "out": res.stdout.decode(), "err": res.stderr.decode(),
                  "enforced": res.enforced, "missing": res.missing}))
"""
HOLES = PROBE_HELPERS + """
target, stream_path, dgram_path = sys.argv[1:4]
st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
def connect():
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(stream_path)
print(json.dumps({
    "core_pattern": t(lambda: os.close(os.open("/proc/sys/kernel/core_pattern", os.O_WRONLY))),
    "hostname": t(lambda: os.close(os.open("/proc/sys/kernel/hostname", os.O_WRONLY))),
    "chmod": t(os.chmod, target, 0o666),
    "utime": t(os.utime, target, (0, 0)),
    "connect": t(connect),
    "udp": t(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()),
    "uid": st["Uid"].split()[0],
    "cap_bnd": st["CapBnd"].strip(),
}))
"""


@pytest.mark.parametrize("host", ["docker-seccomp", "userns-max0"])
def test_the_holes_stay_closed_on_real_hosts_without_user_namespaces(
    host: str, host_layout_dir: str, unix_listeners: tuple[str, str]
) -> None:
    """The same holes, on hosts that really refuse user namespaces (tests/hostile.py)."""
    import hostile

    target = Path(host_layout_dir) / "target"  # the command's user's own file: only seccomp stands in the way
    target.write_text("x")
    target.chmod(0o600)
    if ROOT:
        os.chown(target, HOST_LAYOUT_UID, HOST_LAYOUT_UID)
    before = target.stat()
    proc = hostile.launch(host, [sys.executable, "-c", HOSTILE_RUN, HOLES, str(target), *unix_listeners])
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["rc"] == 0, run["err"]
    assert "namespace:user" in run["missing"] and "namespace:mount" in run["missing"]  # the host layout ran
    got = json.loads(run["out"])
    assert got["core_pattern"] == got["hostname"] == "EACCES", got
    assert got["chmod"] == got["utime"] == "EPERM" and got["connect"] == "EAFNOSUPPORT" and got["udp"] == "EACCES"
    assert (target.stat().st_mode, target.stat().st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    if ROOT:
        assert got["uid"] == "65534" and int(got["cap_bnd"], 16) == 0
        assert {"ids:65534", "capabilities:none"} <= set(run["enforced"])
    else:
        assert "capabilities:held=none" in run["enforced"] and "capabilities:bounding" in run["missing"]
    # Control: the same probe, unsandboxed on the same host, as the same user, reaches the file and the socket.
    ctl = hostile.launch(host, [PYTHON, "-c", HOLES, str(target), *unix_listeners])
    assert ctl.returncode == 0, ctl.stderr
    assert json.loads(ctl.stdout)["connect"] == json.loads(ctl.stdout)["chmod"] == "ok", ctl.stdout


RAW_SOCKETS = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
nr = int(sys.argv[1])
def sock(domain, type_, proto):
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(domain), ctypes.c_long(type_), ctypes.c_long(proto))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket")
    os.close(fd)
HIGH, FLAGS = 1 << 32, 0o2000000 | 0o4000  # high bits the kernel drops; SOCK_CLOEXEC | SOCK_NONBLOCK
cases = {
    "unix_high_bits": (1 | HIGH, 1, 0),
    "udp_with_flags": (2, 2 | FLAGS, 0),
    "udp_high_bits": (2 | HIGH, 2 | HIGH, 0),
    "raw_icmp": (10, 3, 58),
    "mptcp_high_bits": (2, 1, 262 | HIGH),
    "tcp_with_flags": (2, 1 | FLAGS, 6),
    "tcp6": (10, 1, 0),
}
print(json.dumps({k: t(sock, *v) for k, v in cases.items()}))
"""


def test_socket_rules_hold_against_high_bits_and_flags(host_lacking: Callable[[str], None]) -> None:
    """The arguments are ints the kernel truncates to 32 bits, with flags in `type`'s high bits."""
    nr = str(syscall_number("socket"))
    host_lacking("userns")
    got = json.loads(run_probe(RAW_SOCKETS, None, nr).stdout)
    assert got == {
        "unix_high_bits": "EAFNOSUPPORT",
        "udp_with_flags": "EACCES",
        "udp_high_bits": "EACCES",
        "raw_icmp": "EACCES",
        "mptcp_high_bits": "EACCES",
        "tcp_with_flags": "ok",
        "tcp6": "ok",
    }, got
    # Control: the kernel itself takes every one of them (a raw socket needs CAP_NET_RAW).
    host = json.loads(host_probe(RAW_SOCKETS, nr))
    assert {k for k, v in host.items() if v != "ok"} <= ({"raw_icmp"} if not ROOT else set()), host
    assert host["unix_high_bits"] == host["udp_high_bits"] == host["mptcp_high_bits"] == "ok", host


SELF_HOLES = PROBE_HELPERS + """
import tempfile
if len(sys.argv) > 1:  # the unsandboxed control: a directory of its own
    os.chdir(tempfile.mkdtemp())
open("f", "w").close()
print(json.dumps({
    "proc_write": t(lambda: os.close(os.open("/proc/self/comm", os.O_WRONLY))),
    "chmod": t(os.chmod, "f", 0o700),
    "fchmod": t(lambda: os.fchmod(os.open("f", os.O_RDONLY), 0o700)),
    "unix": t(lambda: socket.socket(socket.AF_UNIX).close()),
    "udp": t(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()),
}))
"""


@pytest.mark.parametrize("host", ["nested-bwrap", "nested-native"])
def test_the_host_layout_inside_another_sandbox(host: str) -> None:
    """Nested in a sandbox of either backend (no user namespace left to make): the host layout runs
    as the outer sandbox's user and closes the same holes."""
    import hostile

    proc = hostile.launch(host, [sys.executable, "-c", HOSTILE_RUN, SELF_HOLES])
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["rc"] == 0, run["err"]
    assert "namespace:user" in run["missing"] and "capabilities:bounding" in run["missing"]
    got = json.loads(run["out"])
    assert got == {"proc_write": "EACCES", "chmod": "EPERM", "fchmod": "ok", "unix": "EAFNOSUPPORT",
                   "udp": "EACCES"}, got
    # Control: unsandboxed in the same outer sandbox, every probe succeeds.
    ctl = hostile.launch(host, [PYTHON, "-c", SELF_HOLES, "control"])
    assert ctl.returncode == 0, ctl.stderr
    assert set(json.loads(ctl.stdout).values()) == {"ok"}, ctl.stdout


def test_the_docs_name_every_host_layout_rule() -> None:
    from isolation.seccomp_profile import HOST_LAYOUT_OFFLINE_RULES, HOST_LAYOUT_RULES

    doc = (Path(__file__).parent.parent / "docs" / "native.md").read_text()
    for rule in (*HOST_LAYOUT_RULES, *HOST_LAYOUT_OFFLINE_RULES):
        assert f"`{rule.syscall}`" in doc or f"`{rule.syscall}(" in doc, rule.syscall
    for entry in ("files:metadata-by-descriptor", "capabilities:held=none", "capabilities:bounding", "files:metadata",
                  "sockets:unix", "network:non-tcp"):
        assert f"`{entry}`" in doc, entry
