"""Escape tests against the real kernel, for every backend in the shared matrix.

Each guarantee of SECURITY.md is attacked from inside a real sandbox and the
attack must fail; each has a control where the same probe succeeds (the path
bound, `Network` declared, the variable allowlisted, or the probe run on the
host), so a probe that could never succeed cannot make a test pass.

Probes run `/usr/bin/python3` (part of the system view) and print JSON.
Everything the tests create on the host lives under pytest's `tmp_path`,
`/var/tmp` or `/tmp`, all reachable by the unprivileged CI user.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import PYTHON

import isolation
from isolation import FsRead, FsWrite, IsolationPolicy, Network

pytestmark = pytest.mark.security

NOBODY = 65534


def sandboxed(backend: str, code: str, *args: str, policy: IsolationPolicy | None = None, **kw: Any) -> Any:
    """Run the probe `code` in a sandbox; return its JSON output (the run must exit 0)."""
    res = isolation.run([PYTHON, "-c", code, *args], policy, backend=backend, timeout=60, **kw)
    assert res.backend == backend
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return json.loads(res.stdout)


def on_host(code: str, *args: str, **kw: Any) -> Any:
    """Run the same probe directly on the host: the control."""
    res = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, timeout=60, check=False, **kw)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return json.loads(res.stdout)


# Each path argument: its content, or the name of the error reading it raised.
READ = """
import json, sys
out = {}
for p in sys.argv[1:]:
    try:
        with open(p) as f:
            out[p] = f.read()
    except OSError as e:
        out[p] = type(e).__name__
print(json.dumps(out))
"""

# Each path argument: "written" if creating/overwriting it worked (after creating
# its parents where possible), or the name of the error.
WRITE = """
import json, os, sys
out = {}
for p in sys.argv[2:]:
    try:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(sys.argv[1])
        out[p] = "written"
    except OSError as e:
        out[p] = type(e).__name__
print(json.dumps(out))
"""


@pytest.fixture
def var_tmp_secret() -> Iterator[Path]:
    """A secret in a directory the test creates under /var/tmp (outside every policy)."""
    d = Path(tempfile.mkdtemp(prefix="isolation-escape-", dir="/var/tmp"))
    os.chmod(d, 0o755)
    (d / "secret.txt").write_text("var-tmp-secret-" + uuid.uuid4().hex)
    yield d / "secret.txt"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def home_dotfile() -> Iterator[Path]:
    """A dotfile planted in the caller's $HOME for this test, next to the real ones."""
    home = Path(os.path.expanduser("~"))
    assert home.is_dir() and str(home) != "/", f"the caller's HOME {home} must be a real directory"
    f = home / f".isolation-escape-{uuid.uuid4().hex}"
    f.write_text("home-secret-" + uuid.uuid4().hex)
    try:
        yield f
    finally:
        f.unlink()


# -- host files outside the policy ---------------------------------------------------


def test_secret_outside_the_policy_is_invisible(backend: str, tmp_path: Path, var_tmp_secret: Path) -> None:
    in_tmp_path = tmp_path / "secret.txt"
    in_tmp_path.write_text("tmp-path-secret-" + uuid.uuid4().hex)
    secrets = [var_tmp_secret, in_tmp_path]
    paths = [str(p) for p in secrets] + [str(p.parent) for p in secrets]

    seen = sandboxed(backend, READ, *paths)
    for p in secrets:
        assert seen[str(p)] == "FileNotFoundError", seen
    exists = sandboxed(backend, "import json, os, sys; print(json.dumps([os.path.lexists(p) for p in sys.argv[1:]]))",
                       *paths)
    assert exists == [False] * len(paths)

    # Control: the same probe reads them once they are bound.
    bound = IsolationPolicy.from_effects([FsRead(str(var_tmp_secret.parent)), FsRead(str(tmp_path))])
    seen = sandboxed(backend, READ, *(str(p) for p in secrets), policy=bound)
    assert seen == {str(p): p.read_text() for p in secrets}


def test_home_dotfiles_are_invisible(backend: str, home_dotfile: Path) -> None:
    home = home_dotfile.parent
    dotfiles = [home_dotfile] + sorted(
        p for p in home.iterdir()
        if p.name.startswith(".") and p.is_file() and not p.is_symlink() and os.access(p, os.R_OK)
    )
    seen = sandboxed(backend, READ, *(str(p) for p in dotfiles))
    assert set(seen.values()) == {"FileNotFoundError"}, seen
    listing = sandboxed(backend, "import json, os, sys; print(json.dumps(os.path.lexists(sys.argv[1])))", str(home))
    assert listing is False

    # Control: readable, with exactly the host's content, when the home directory is bound.
    seen = sandboxed(backend, READ, str(home_dotfile), policy=IsolationPolicy.from_effects([FsRead(str(home))]))
    assert seen == {str(home_dotfile): home_dotfile.read_text()}


# -- writes outside the policy ----------------------------------------------------------


def test_writes_outside_the_policy_do_not_land_on_the_host(backend: str, tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "existing").write_text("original")
    targets = [
        host_dir / "existing",
        host_dir / f"new-{token}",
        Path(f"/etc/isolation-escape-{token}"),
        Path(f"/usr/isolation-escape-{token}"),
        Path(f"/usr/bin/isolation-escape-{token}"),
        Path(f"/var/tmp/isolation-escape-{token}"),
        Path(f"/etc/ld.so.conf.d/isolation-escape-{token}.conf"),
    ]
    try:
        out = sandboxed(backend, WRITE, "attack", *(str(t) for t in targets))
        # /etc and /usr are read-only inside; the others may be written in the
        # sandbox's private /tmp but must not reach the host.
        for t in targets[2:5] + targets[6:]:
            assert out[str(t)] in ("OSError", "PermissionError", "FileNotFoundError"), out
        assert (host_dir / "existing").read_text() == "original"
        assert sorted(os.listdir(host_dir)) == ["existing"]
        for t in targets[1:]:
            assert not os.path.lexists(t), f"{t} landed on the host"
    finally:
        for t in targets[2:]:
            if os.path.lexists(t):
                os.unlink(t)

    # Control: the same probe's write lands when the directory is FsWrite.
    out = sandboxed(backend, WRITE, "allowed", str(host_dir / "existing"),
                    policy=IsolationPolicy.from_effects([FsWrite(str(host_dir))]))
    assert out == {str(host_dir / "existing"): "written"}
    assert (host_dir / "existing").read_text() == "allowed"


def test_fsread_is_read_only_and_fswrite_lands(backend: str, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "data").write_text("read me")
    os.chmod(ro / "data", 0o666)  # writable by permissions: only the bind may stop the write
    os.chmod(ro, 0o777)
    os.chmod(rw, 0o777)
    policy = IsolationPolicy.from_effects([FsRead(str(ro)), FsWrite(str(rw))])

    assert sandboxed(backend, READ, str(ro / "data"), policy=policy) == {str(ro / "data"): "read me"}
    out = sandboxed(backend, WRITE, "payload", str(ro / "data"), str(ro / "new"), str(rw / "out"), policy=policy)
    assert out[str(ro / "data")] == "OSError"  # EROFS
    assert out[str(ro / "new")] == "OSError"
    assert out[str(rw / "out")] == "written"
    assert (ro / "data").read_text() == "read me"
    assert sorted(os.listdir(ro)) == ["data"]
    assert (rw / "out").read_text() == "payload"

    # The read-only file is not made writable by chmod, rename or unlink either.
    attack = """
import json, os, sys
p = sys.argv[1]
out = {}
for name, op in [("chmod", lambda: os.chmod(p, 0o777)), ("rename", lambda: os.rename(p, p + ".moved")),
                 ("unlink", lambda: os.unlink(p)), ("utime", lambda: os.utime(p, (0, 0)))]:
    try:
        op(); out[name] = "done"
    except OSError as e:
        out[name] = type(e).__name__
print(json.dumps(out))
"""
    before = os.stat(ro / "data")
    out = sandboxed(backend, attack, str(ro / "data"), policy=policy)
    assert "done" not in out.values(), out
    after = os.stat(ro / "data")
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert sorted(os.listdir(ro)) == ["data"]


def test_git_stays_read_only_inside_a_writable_workspace(backend: str, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    git = ws / ".git"
    (git / "hooks").mkdir(parents=True)
    (git / "config").write_text("[core]\n\tbare = false\n")
    for p in (ws, git, git / "hooks"):
        os.chmod(p, 0o777)
    os.chmod(git / "config", 0o666)
    policy = IsolationPolicy.from_effects([FsWrite(str(ws)), FsRead(str(git))])
    before = sorted(str(p.relative_to(ws)) for p in ws.rglob("*"))

    out = sandboxed(backend, WRITE, "[core]\n\tfsmonitor = evil\n", str(ws / "file"), str(git / "config"),
                    str(git / "hooks" / "pre-commit"), policy=policy)
    assert out[str(ws / "file")] == "written"
    assert out[str(git / "config")] == "OSError"
    assert out[str(git / "hooks" / "pre-commit")] == "OSError"
    # Moving .git aside (to plant a writable one) fails too: it is a mount point.
    moved = sandboxed(backend, """
import json, os, sys
try:
    os.rename(sys.argv[1], sys.argv[1] + ".old"); print(json.dumps("renamed"))
except OSError as e:
    print(json.dumps(type(e).__name__))
""", str(git), policy=policy)
    assert moved != "renamed"

    assert (ws / "file").read_text() == "[core]\n\tfsmonitor = evil\n"
    assert (git / "config").read_text() == "[core]\n\tbare = false\n"
    assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*")) == sorted([*before, "file"])


# -- network ------------------------------------------------------------------------------


CONNECT = """
import json, socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    print(json.dumps(s.recv(100).decode()))
except OSError as e:
    print(json.dumps(type(e).__name__))
"""


@contextlib.contextmanager
def greeter(srv: socket.socket, token: str) -> Iterator[None]:
    """Serve `srv` on the host while the block runs: every client gets `token`."""
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(token.encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        srv.close()


@pytest.fixture
def host_listener() -> Iterator[tuple[int, str]]:
    """A TCP listener on the host's 127.0.0.1 that greets every client with a token."""
    token = "listener-" + uuid.uuid4().hex
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    with greeter(srv, token):
        yield srv.getsockname()[1], token


def test_no_tcp_to_the_host_without_network(backend: str, host_listener: tuple[int, str]) -> None:
    port, token = host_listener
    out = sandboxed(backend, CONNECT, str(port))
    assert out != token and out in ("ConnectionRefusedError", "OSError", "PermissionError", "TimeoutError"), out
    # Control: with Network the sandbox shares the host network and reaches the listener.
    assert sandboxed(backend, CONNECT, str(port), policy=IsolationPolicy.from_effects([Network()])) == token
    assert on_host(CONNECT, str(port)) == token


UDP_SEND = """
import json, socket, sys
try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(sys.argv[2].encode(), ("127.0.0.1", int(sys.argv[1])))
    print(json.dumps("sent"))
except OSError as e:
    print(json.dumps(type(e).__name__))
"""


def test_no_udp_to_the_host_without_network(backend: str) -> None:
    token = "udp-" + uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind(("127.0.0.1", 0))
        port = str(srv.getsockname()[1])
        srv.settimeout(2)

        def received() -> bytes:
            try:
                return srv.recv(100)
            except TimeoutError:
                return b""

        sandboxed(backend, UDP_SEND, port, token)  # "sent" into its own loopback, or refused
        assert received() == b""
        # Control: with Network the same datagram arrives.
        assert sandboxed(backend, UDP_SEND, port, token, policy=IsolationPolicy.from_effects([Network()])) == "sent"
        assert received() == token.encode()


SYSV_IPC = """
import ctypes, errno, json, sys
libc = ctypes.CDLL(None, use_errno=True)
key = int(sys.argv[1])
out = {}
for name, rc in (("shm", libc.shmget(key, 0, 0)), ("msg", libc.msgget(key, 0))):
    out[name] = "found" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
print(json.dumps(out))
"""


def test_host_sysv_ipc_objects_are_invisible(backend: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ipc_creat, ipc_excl, ipc_rmid = 0o1000, 0o2000, 0
    key = 0x15000000 | (uuid.uuid4().int & 0xFFFFFF)
    shm = libc.shmget(key, 4096, ipc_creat | ipc_excl | 0o666)
    msg = libc.msgget(key, ipc_creat | ipc_excl | 0o666)
    try:
        assert shm >= 0 and msg >= 0, ctypes.get_errno()
        assert sandboxed(backend, SYSV_IPC, str(key)) == {"shm": "ENOENT", "msg": "ENOENT"}
        assert on_host(SYSV_IPC, str(key)) == {"shm": "found", "msg": "found"}  # control
    finally:
        if shm >= 0:
            libc.shmctl(shm, ipc_rmid, None)
        if msg >= 0:
            libc.msgctl(msg, ipc_rmid, None)


# -- identity and privileges ----------------------------------------------------------------


IDS = """
import json, os, subprocess
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
    "Uid": status["Uid"].split(), "Gid": status["Gid"].split(),
    "id": [subprocess.check_output(["id", flag], text=True).strip() for flag in ("-u", "-g")],
}))
"""


def test_uid_and_gid_are_nobody(backend: str) -> None:
    out = sandboxed(backend, IDS)
    assert out["ids"] == [NOBODY] * 4
    assert out["Uid"] == [str(NOBODY)] * 4 and out["Gid"] == [str(NOBODY)] * 4
    assert out["id"] == [str(NOBODY)] * 2
    # Control: the probe reports the caller's own ids on the host.
    host = on_host(IDS)
    assert host["ids"] == [os.getuid(), os.geteuid(), os.getgid(), os.getegid()] != [NOBODY] * 4
    assert host["id"] == [str(os.getuid()), str(os.getgid())]


PRIVILEGES = """
import ctypes, errno, json, os, subprocess, tempfile
libc = ctypes.CDLL(None, use_errno=True)
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
out = {"uid": os.getuid(), "caps": {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}}
def attempt(name, rc):
    out[name] = "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
attempt("setuid0", libc.setuid(0))
attempt("setgid0", libc.setgid(0))
attempt("setresuid0", libc.setresuid(0, 0, 0))
mnt = tempfile.mkdtemp()
attempt("mount_tmpfs", libc.mount(b"none", mnt.encode(), b"tmpfs", 0, None))
out["mount_cmd"] = subprocess.run(["mount", "-t", "tmpfs", "none", mnt], capture_output=True).returncode
while libc.umount2(mnt.encode(), 0) == 0:
    pass
os.rmdir(mnt)
attempt("mount_remount_root_rw", libc.mount(None, b"/", None, 32 | 4096, None))  # MS_REMOUNT | MS_BIND
out["unshare_cmd"] = subprocess.run(["unshare", "-r", "true"], capture_output=True).returncode
attempt("unshare_mount", libc.unshare(0x00020000))  # CLONE_NEWNS
attempt("unshare_user", libc.unshare(0x10000000))  # CLONE_NEWUSER
attempt("chroot", libc.chroot(b"/tmp"))  # last: nothing after it needs the old root
print(json.dumps(out))
"""


def test_setuid_mount_and_capabilities_are_gone(backend: str) -> None:
    out = sandboxed(backend, PRIVILEGES)
    for name in ("setuid0", "setgid0", "setresuid0", "mount_tmpfs", "mount_remount_root_rw", "unshare_user",
                 "unshare_mount", "chroot"):
        assert out[name] != "ok", (name, out)
    assert out["mount_cmd"] != 0 and out["unshare_cmd"] != 0
    assert out["caps"] == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
    assert out["uid"] == NOBODY

    # Control: in a user namespace of its own on the host, where it holds root, the
    # same probe succeeds at every step (so each step can detect success).
    host = json.loads(subprocess.run(["unshare", "--user", "--map-root-user", "--mount", PYTHON, "-c", PRIVILEGES],
                                     capture_output=True, check=True, timeout=60).stdout)
    for name in ("setuid0", "setgid0", "setresuid0", "mount_tmpfs", "unshare_user", "unshare_mount", "chroot"):
        assert host[name] == "ok", (name, host)
    assert host["mount_cmd"] == 0 and host["unshare_cmd"] == 0
    assert host["caps"]["CapEff"] != 0 and host["caps"]["CapBnd"] != 0


STATUS = """
import json, os
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print(json.dumps({k: status[k].strip() for k in ("NoNewPrivs", "Seccomp")}))
"""


def test_no_new_privs_is_set(backend: str) -> None:
    assert sandboxed(backend, STATUS)["NoNewPrivs"] == "1"
    # Control: the probe reads 0 from a plain process on the host.
    assert on_host(STATUS)["NoNewPrivs"] == "0"


# -- environment ------------------------------------------------------------------------------


ENVIRON = """
import json, os
procs = {}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for what in ("environ", "cmdline"):
            try:
                procs[pid + "/" + what] = open(f"/proc/{pid}/{what}", "rb").read().decode(errors="replace")
            except OSError as e:
                procs[pid + "/" + what] = type(e).__name__
print(json.dumps({"env": dict(os.environ), "procs": procs}))
"""


def test_caller_secrets_in_the_environment_do_not_reach_the_sandbox(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "AWS_SECRET_ACCESS_KEY": "aws-" + uuid.uuid4().hex,
        "GITHUB_TOKEN": "ghp-" + uuid.uuid4().hex,
        "LD_PRELOAD": "/nonexistent/" + uuid.uuid4().hex + ".so",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("ISOLATION_ESCAPE_ALLOWED", "allowed-" + uuid.uuid4().hex)

    out = sandboxed(backend, ENVIRON)
    # bubblewrap also exports PWD for the directory it changed into; nothing else beyond the documented set.
    assert set(out["env"]) <= {"PATH", "HOME", "USER", "LOGNAME", "PWD", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ"}
    assert out["env"].get("PWD", "/work") == "/work"
    assert out["env"]["HOME"] == "/work" and out["env"]["USER"] == "nobody"
    everything = json.dumps(out)
    for k, v in secrets.items():
        assert k not in out["env"] and v not in everything, k
    assert os.environ["ISOLATION_ESCAPE_ALLOWED"] not in everything

    # Control: an allowlisted variable arrives with its value; the secrets still do not.
    policy = IsolationPolicy.from_effects([], env_allowlist=["ISOLATION_ESCAPE_ALLOWED"])
    out = sandboxed(backend, ENVIRON, policy=policy)
    assert out["env"]["ISOLATION_ESCAPE_ALLOWED"] == os.environ["ISOLATION_ESCAPE_ALLOWED"]
    everything = json.dumps(out)
    for v in secrets.values():
        assert v not in everything


# -- processes --------------------------------------------------------------------------------


PROCS = """
import json, os, signal, sys
pid = int(sys.argv[1])
out = {"pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
cmdlines = []
for p in out["pids"]:
    try:
        cmdlines.append(open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace"))
    except OSError:
        pass
out["cmdlines"] = cmdlines
for name, sig in (("probe", 0), ("term", signal.SIGTERM), ("kill", signal.SIGKILL))[:int(sys.argv[2])]:
    try:
        os.kill(pid, sig); out[name] = "ok"
    except OSError as e:
        out[name] = type(e).__name__
try:
    os.close(os.pidfd_open(pid)); out["pidfd"] = "ok"
except OSError as e:
    out["pidfd"] = type(e).__name__
print(json.dumps(out))
"""


@pytest.fixture
def host_sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    marker = f"{1000 + uuid.uuid4().int % 10**6 / 10**6:.6f}"  # a unique duration, findable in cmdlines
    proc = subprocess.Popen(["sleep", marker])
    yield proc, marker
    proc.kill()
    proc.wait()


def test_host_processes_are_invisible_and_unsignallable(
    backend: str, host_sleeper: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, marker = host_sleeper
    out = sandboxed(backend, PROCS, str(proc.pid), "3")
    assert proc.pid not in out["pids"]
    assert len(out["pids"]) <= 3, out["pids"]  # at most an init and the probe
    assert not any(marker in c for c in out["cmdlines"])
    for name in ("probe", "term", "kill", "pidfd"):
        assert out[name] == "ProcessLookupError", (name, out)
    assert proc.poll() is None, "the host process was killed from inside the sandbox"

    # Control: the same probe on the host sees it and signals it (with signal 0).
    host = on_host(PROCS, str(proc.pid), "1")  # signal 0 only: the host run must not kill it
    assert proc.pid in host["pids"] and any(marker in c for c in host["cmdlines"])
    assert host["probe"] == "ok" and host["pidfd"] == "ok"
    os.kill(proc.pid, 0)


# -- /work, /tmp, descriptors, session, /dev, hostname --------------------------------------


WORK_TMP = """
import json, os, sys
out = {"cwd": os.getcwd(), "work": sorted(os.listdir("/work")), "tmp": sorted(os.listdir("/tmp")),
       "host_tmp_file": os.path.lexists(sys.argv[1])}
for d in ("/work", "/tmp"):
    with open(os.path.join(d, "probe-" + sys.argv[2]), "w") as f:
        f.write("x")
    out[d] = open(os.path.join(d, "probe-" + sys.argv[2])).read()
print(json.dumps(out))
"""


def test_work_is_empty_and_writable_and_tmp_is_private(backend: str) -> None:
    token = uuid.uuid4().hex
    fd, host_file = tempfile.mkstemp(prefix="isolation-escape-", dir="/tmp")
    os.close(fd)
    try:
        os.chmod(host_file, 0o644)
        out = sandboxed(backend, WORK_TMP, host_file, token)
        assert out["cwd"] == "/work" and out["work"] == [] and out["tmp"] == []
        assert out["host_tmp_file"] is False
        assert out["/work"] == "x" and out["/tmp"] == "x"
        assert not os.path.lexists(f"/tmp/probe-{token}")

        # Control: the probe sees the host file when it is bound.
        out = sandboxed(backend, WORK_TMP, host_file, token, policy=IsolationPolicy.from_effects([FsRead(host_file)]))
        assert out["host_tmp_file"] is True
        assert on_host(READ, host_file) == {host_file: ""}
    finally:
        os.unlink(host_file)
    assert not os.path.lexists(f"/tmp/probe-{token}")


FDS = """
import json, os
fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
targets = {}
for n in fds:
    try:
        targets[n] = os.readlink(f"/proc/self/fd/{n}")
    except OSError:
        targets[n] = None  # the descriptor that listed the directory, closed by now
print(json.dumps({"fds": fds, "targets": targets}))
"""


def test_only_stdio_descriptors_reach_the_sandbox(backend: str, tmp_path: Path) -> None:
    leak = tmp_path / "leaked"
    leak.write_text("fd secret")
    fd = os.open(leak, os.O_RDONLY)
    high = os.dup2(fd, 200, inheritable=True)
    r, w = os.pipe()
    os.set_inheritable(fd, True)
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    try:
        out = sandboxed(backend, FDS)
        extra = {int(n): t for n, t in out["targets"].items() if int(n) > 2}
        assert all(t is None for t in extra.values()), extra  # only the listing's own descriptor
        assert len(extra) <= 1, extra
        for n in (fd, high, r, w):
            assert n not in extra or extra[n] is None
        assert str(leak) not in json.dumps(out)

        # Control: a host child that keeps inheritable descriptors shows them.
        host = on_host(FDS, close_fds=False)
        assert high in host["fds"]
        assert host["targets"][str(high)] == str(leak)
    finally:
        for n in (fd, high, r, w):
            os.close(n)


TTY = """
import fcntl, json, os, termios
fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
out = {"isatty": os.isatty(0), "tty_nr": int(fields[4]), "session_leader": os.getsid(0) == os.getpid()}
try:
    os.close(os.open("/dev/tty", os.O_RDWR)); out["dev_tty"] = "opened"
except OSError as e:
    out["dev_tty"] = type(e).__name__
try:
    for ch in b"echo INJECTED\\n":
        fcntl.ioctl(0, termios.TIOCSTI, bytes([ch]))
    out["tiocsti"] = "ok"
except OSError as e:
    out["tiocsti"] = type(e).__name__
print(json.dumps(out))
"""

# Runs in a fresh session on the host, takes a new pty as its controlling terminal
# (like a developer's shell), and runs the probe with that terminal as stdin:
# either sandboxed (argv[1] = backend) or directly as the control (argv[1] = "host").
TTY_CALLER = """
import fcntl, json, os, subprocess, sys, termios, time
import isolation
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
if sys.argv[1] == "host":
    res = subprocess.run([sys.argv[2], "-c", sys.argv[3]], stdin=slave, capture_output=True, timeout=60)
else:
    res = isolation.run([sys.argv[2], "-c", sys.argv[3]], stdin=slave, backend=sys.argv[1], timeout=60)
assert res.returncode == 0, res
time.sleep(0.1)
os.set_blocking(slave, False)
try:
    typed = os.read(slave, 1000).decode()
except BlockingIOError:
    typed = ""
print(json.dumps({"probe": json.loads(res.stdout), "typed": typed}))
"""


def _tiocsti_allowed_on_host() -> bool:
    try:
        legacy = Path("/proc/sys/dev/tty/legacy_tiocsti").read_text().strip() == "1"
    except OSError:
        legacy = True  # kernels before 6.2 have no switch: TIOCSTI always works on one's own terminal
    return legacy or os.geteuid() == 0


def test_no_tiocsti_into_the_callers_terminal(backend: str) -> None:
    def caller(mode: str) -> Any:
        res = subprocess.run([sys.executable, "-c", TTY_CALLER, mode, PYTHON, TTY], capture_output=True,
                             timeout=120, start_new_session=True, check=False)
        assert res.returncode == 0, res.stderr.decode()
        return json.loads(res.stdout)

    out = caller(backend)
    assert out["probe"]["isatty"] is True  # the caller's terminal did reach it as stdin
    assert out["probe"]["tty_nr"] == 0  # but it has no controlling terminal: a new session
    assert out["probe"]["dev_tty"] != "opened"
    assert out["probe"]["tiocsti"] != "ok"
    assert "INJECTED" not in out["typed"]

    # Control: the same probe in the caller's session owns the terminal and, where the
    # kernel allows TIOCSTI at all, types into it.
    host = caller("host")
    assert host["probe"]["isatty"] is True and host["probe"]["tty_nr"] != 0 and host["probe"]["dev_tty"] == "opened"
    if _tiocsti_allowed_on_host():
        assert host["probe"]["tiocsti"] == "ok" and "INJECTED" in host["typed"]


DEV = """
import json, os, stat
out = {}
for root, dirs, files in os.walk("/dev"):
    for name in dirs + files:
        p = os.path.join(root, name)
        st = os.lstat(p)
        if stat.S_ISCHR(st.st_mode):
            out[p] = ["chr", os.major(st.st_rdev), os.minor(st.st_rdev)]
        elif stat.S_ISBLK(st.st_mode):
            out[p] = ["blk", os.major(st.st_rdev), os.minor(st.st_rdev)]
        elif stat.S_ISLNK(st.st_mode):
            out[p] = ["lnk", os.readlink(p)]
        else:
            out[p] = ["dir" if stat.S_ISDIR(st.st_mode) else "other"]
    dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
print(json.dumps(out))
"""

# (major, minor) of the character devices a minimal /dev may hold.
ALLOWED_DEVICES = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)}
REQUIRED_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
                    "tty": (5, 0)}


def test_dev_is_minimal(backend: str) -> None:
    out = sandboxed(backend, DEV)
    for name, dev in REQUIRED_DEVICES.items():
        assert out.get(f"/dev/{name}") == ["chr", *dev], (name, out)
    assert not [p for p, kind in out.items() if kind[0] == "blk"], out
    # Character devices: the allowed ones, plus pty slaves of its own fresh devpts (none yet).
    odd = [p for p, k in out.items() if k[0] == "chr" and (k[1], k[2]) not in ALLOWED_DEVICES]
    assert not odd, odd
    for name in ("mem", "kmem", "port", "kmsg", "sda", "vda", "nvme0", "loop0", "console", "kvm", "fuse"):
        assert f"/dev/{name}" not in out
    # Whatever symlinks exist lead nowhere outside the sandbox's own /proc and /dev.
    for p, k in out.items():
        if k[0] == "lnk":
            assert k[1].startswith(("/proc/", "pts/", "/dev/")), (p, k)

    # Control: on the host the probe finds devices a sandbox must not have.
    host = on_host(DEV)
    assert any(k[0] in ("chr", "blk") and (k[0] == "blk" or (k[1], k[2]) not in ALLOWED_DEVICES)
               for p, k in host.items() if not p.startswith("/dev/pts/"))


# Each path: chmod to the mode it already has and utime to the times it already has, so
# nothing changes even where the attempt gets through. "own" first creates /tmp/own.
DEVICE_ATTRS = """
import json, os, stat, sys
out = {}
paths = sys.argv[1:]
if paths == ["own"]:
    paths = ["/tmp/own"]
    open(paths[0], "w").close()
for p in paths:
    st = os.stat(p)
    out[p + " id"] = [st.st_dev, st.st_ino]
    for name, op in (("chmod", lambda: os.chmod(p, stat.S_IMODE(st.st_mode))),
                     ("utime", lambda: os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns)))):
        try:
            op()
            out[p + " " + name] = "done"
        except OSError as e:
            out[p + " " + name] = type(e).__name__
print(json.dumps(out))
"""


def test_the_hosts_device_nodes_cannot_be_altered(backend: str) -> None:
    """The sandbox's /dev/null and friends are the host's own device nodes, bound in. For a
    root caller the sandbox's uid is their owner (host uid 0): were they on a writable mount,
    `chmod 000 /dev/null` inside would break every program on the host."""
    devices = [f"/dev/{d}" for d in REQUIRED_DEVICES]
    before = {d: os.stat(d).st_mode for d in devices}
    out = sandboxed(backend, DEVICE_ATTRS, *devices)
    assert {d: os.stat(d).st_mode for d in devices} == before
    for d in devices:
        host = os.stat(d)
        if out[d + " id"] == [host.st_dev, host.st_ino]:  # the host's own node: it must not be alterable
            assert out[d + " chmod"] != "done" and out[d + " utime"] != "done", (d, out)
        else:  # a private copy (bwrap, root caller): altering it cannot reach the host's node
            assert os.getuid() == 0 and backend == "bwrap", (d, out)
    # Control: the probe's operations work on a file the process owns.
    own = sandboxed(backend, DEVICE_ATTRS, "own")
    assert {k: v for k, v in own.items() if not k.endswith(" id")} == {
        "/tmp/own chmod": "done",
        "/tmp/own utime": "done",
    }


HOSTNAME = """
import ctypes, errno, json, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {"hostname": socket.gethostname(), "proc": open("/proc/sys/kernel/hostname").read().strip()}
if sys.argv[1] == "try-set":
    rc = libc.sethostname(b"evil", 4)
    out["sethostname"] = "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]
print(json.dumps(out))
"""


def test_hostname_is_not_the_hosts(backend: str) -> None:
    host_name = socket.gethostname()
    out = sandboxed(backend, HOSTNAME, "try-set")
    assert out["hostname"] != host_name and out["proc"] != host_name
    assert out["sethostname"] != "ok"
    assert socket.gethostname() == host_name
    # Control: the probe reports the real name on the host (only the read half: as root,
    # setting it there would succeed and rename the machine).
    host = on_host(HOSTNAME, "read-only")
    assert host["hostname"] == host_name == host["proc"]



# -- the caller itself --------------------------------------------------------------------------


# Runs in a fresh interpreter (the test process may have run sandboxes already): records
# its own state, starts three sandboxes, and reports the state after each.
CALLER = """
import ctypes, json, os, sys
import isolation
libc = ctypes.CDLL(None, use_errno=True)

def state():
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    keys = ("NoNewPrivs", "Seccomp", "CapEff", "CapPrm", "CapBnd", "SigBlk", "Uid", "Gid")
    return {
        "dumpable": libc.prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE: a flag of the whole address space
        **{k: status[k].split() for k in keys},
        "umask": os.umask(os.umask(0o022)),
        "cwd": os.getcwd(),
        "sid": os.getsid(0),
        "proc_owner": os.stat(f"/proc/{os.getpid()}").st_uid,
    }

states, runs = [state()], []
for _ in range(3):
    try:
        res = isolation.run([sys.argv[2], "-c", "import os; print(os.getuid())"], backend=sys.argv[1], timeout=60)
        runs.append(res.stdout.decode().strip())
    except isolation.IsolationError as e:
        runs.append(repr(e))
    states.append(state())
print(json.dumps({"states": states, "runs": runs}))
"""


def test_running_a_sandbox_leaves_the_caller_unchanged(backend: str) -> None:
    """Setting up a sandbox must not change the caller's own process: not its privileges,
    its session, its signal mask, nor whether it can be inspected (dumpable is a flag of
    the address space, so a setup that shares the caller's memory must not flip it).
    And a second and third sandbox still start from the same caller."""
    res = subprocess.run([sys.executable, "-c", CALLER, backend, PYTHON], capture_output=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr.decode()
    out = json.loads(res.stdout)
    assert out["runs"] == [str(NOBODY)] * 3
    first = out["states"][0]
    assert first["dumpable"] == 1  # control: a fresh interpreter is dumpable, so a flip would show
    for after in out["states"][1:]:
        assert after == first


# -- more ways out ----------------------------------------------------------------------------


ALL_PROCS = """
import json, os
out = {"self": os.getpid()}
for pid in (p for p in os.listdir("/proc") if p.isdigit()):
    try:
        st = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines())
    except OSError:
        continue  # exited meanwhile (only on the host, where other processes come and go)
    keys = ("Uid", "CapInh", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    info = {k: st[k].split() for k in keys}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        info["fds"] = {}
        for n in fds:
            try:
                info["fds"][n] = os.readlink(f"/proc/{pid}/fd/{n}")
            except OSError:
                pass  # closed meanwhile (the listing's own descriptor)
        info["root"] = sorted(os.listdir(f"/proc/{pid}/root/"))
    except OSError as e:
        info["fds"] = type(e).__name__  # not inspectable by the command
    out[pid] = info
print(json.dumps(out))
"""


def test_every_process_in_the_sandbox_is_unprivileged_and_holds_nothing_of_the_host(
    backend: str, tmp_path: Path
) -> None:
    """No process in the sandbox (its init included) keeps a capability, and none the command
    can inspect runs without the syscall filter or holds a descriptor onto the host."""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    try:
        out = sandboxed(backend, ALL_PROCS)
        # Control: a host child that inherits the descriptor shows it to the same probe.
        host = on_host(ALL_PROCS, close_fds=False)
    finally:
        os.close(fd)
    assert str(tmp_path) in host[str(host["self"])]["fds"].values()
    assert host[str(host["self"])]["NoNewPrivs"] == ["0"]
    me = out.pop("self")
    assert 1 <= len(out) <= 3 and str(me) in out, out
    view = set(sandboxed(backend, "import json, os; print(json.dumps(sorted(os.listdir('/'))))"))
    for pid, info in out.items():
        assert info["Uid"] == [str(NOBODY)] * 4, (pid, info)
        for k in ("CapInh", "CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(info[k][0], 16) == 0, (pid, k, info)
        assert info["NoNewPrivs"] == ["1"], (pid, info)
        if isinstance(info["fds"], str):
            assert pid != str(me) and info["fds"] == "PermissionError", (pid, info)
            continue
        assert info["Seccomp"] == ["2"], (pid, info)  # inspectable, so it must be filtered too
        assert set(info["root"]) == view, (pid, info)  # its root is the sandbox's, not the host's
        for n, target in info["fds"].items():
            assert target.startswith(("pipe:", "socket:", "anon_inode:", "/dev/null", "/dev/pts/", "/proc/")), (
                pid, n, target)


def test_symlinks_in_a_bound_tree_do_not_lead_out_of_the_view(
    backend: str, tmp_path: Path, var_tmp_secret: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abs").symlink_to(var_tmp_secret)
    (ws / "dir").symlink_to(var_tmp_secret.parent)
    (ws / "rel").symlink_to(os.path.relpath(var_tmp_secret, ws))
    (ws / "root").symlink_to("/")
    probes = [str(ws / "abs"), str(ws / "dir" / var_tmp_secret.name), str(ws / "rel"),
              str(ws / "root" / str(var_tmp_secret).lstrip("/"))]
    policy = IsolationPolicy.from_effects([FsWrite(str(ws))])
    seen = sandboxed(backend, READ, *probes, policy=policy)
    assert set(seen.values()) == {"FileNotFoundError"}, seen
    # Writing through them lands in the sandbox's own (read-only) view, never on the host.
    out = sandboxed(backend, WRITE, "overwritten", str(ws / "abs"), str(ws / "rel"), policy=policy)
    assert "written" not in out.values(), out
    secret = var_tmp_secret.read_text()
    assert secret.startswith("var-tmp-secret-")
    # Control: on the host every one of these links reaches the secret.
    assert on_host(READ, *probes) == dict.fromkeys(probes, secret)


def test_host_only_system_paths_are_absent(backend: str) -> None:
    paths = ["/etc/shadow", "/etc/hostname", "/etc/machine-id", "/root", "/home", "/var", "/run", "/srv", "/mnt",
             "/opt", "/sys", "/boot", "/proc/1/root/etc/shadow", "/dev/core", os.path.expanduser("~")]
    probe = """
import json, os, sys
out = {}
for p in sys.argv[1:]:
    try:
        out[p] = sorted(os.listdir(p)) if os.path.isdir(p) else open(p, "rb").read(16).hex()
    except OSError as e:
        out[p] = type(e).__name__
print(json.dumps(out))
"""
    out = sandboxed(backend, probe, *paths)
    for p in paths:
        assert out[p] in ("FileNotFoundError", "PermissionError", "OSError"), (p, out[p])
    # Control: the host has most of them, and the probe reads them there.
    host = on_host(probe, *paths)
    assert sum(not isinstance(v, str) or not v.endswith("Error") for v in host.values()) >= 5, host


SYSCTL = """
import json, os, sys
out = {}
for p in sys.argv[1:]:
    try:
        with open(p, "rb") as f:
            value = f.read()
        fd = os.open(p, os.O_WRONLY)  # no O_TRUNC: a proc file needs none
        try:
            os.write(fd, value)  # the value it already has: harmless even if it got through
        finally:
            os.close(fd)
        out[p] = "written"
    except OSError as e:
        out[p] = type(e).__name__
print(json.dumps(out))
"""


def test_kernel_settings_are_not_writable(backend: str) -> None:
    """For a root caller the sandbox's uid is host uid 0, the owner of /proc/sys: only the
    read-only mount stands between it and kernel.core_pattern (host root)."""
    host_wide = [p for p in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
                             "/proc/sys/vm/overcommit_memory", "/proc/sys/kernel/pid_max") if os.path.exists(p)]
    assert "/proc/sys/kernel/core_pattern" in host_wide
    paths = [*host_wide, "/proc/sys/kernel/hostname"]
    before = {p: Path(p).read_text() for p in host_wide}
    out = sandboxed(backend, SYSCTL, *paths)
    for p in paths:
        assert out[p] != "written", (p, out)
    assert {p: Path(p).read_text() for p in host_wide} == before
    # Control: the probe's write path works on a proc file the process owns.
    assert sandboxed(backend, SYSCTL, "/proc/self/comm") == {"/proc/self/comm": "written"}


ABSTRACT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\\0" + sys.argv[1])
    print(json.dumps(s.recv(100).decode()))
except OSError as e:
    print(json.dumps(type(e).__name__))
"""


def test_no_host_abstract_unix_socket_without_network(
    backend: str, abstract_listener: tuple[str, socket.socket]
) -> None:
    name, srv = abstract_listener
    token = "abstract-" + uuid.uuid4().hex
    with greeter(srv, token):
        assert sandboxed(backend, ABSTRACT, name) in ("ConnectionRefusedError", "PermissionError")
        assert on_host(ABSTRACT, name) == token  # control


KEYRING = """
import ctypes, errno, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
KEYCTL_READ, KEYCTL_DESCRIBE = 11, 6
key, SYS_keyctl = int(sys.argv[1]), int(sys.argv[2])
buf = ctypes.create_string_buffer(256)
out = {}
for name, op in (("read", KEYCTL_READ), ("describe", KEYCTL_DESCRIBE)):
    n = libc.syscall(SYS_keyctl, op, key, buf, 256)
    out[name] = buf.raw[:n].rstrip(b"\\0").decode() if n >= 0 else errno.errorcode[ctypes.get_errno()]
print(json.dumps(out))
"""

# In a fresh session keyring of its own, the caller stores a secret key, then runs the probe
# sandboxed (argv[1] = backend) or directly (argv[1] = "host", the control).
KEYRING_CALLER = """
import ctypes, json, subprocess, sys
import isolation
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_add_key, SYS_keyctl = int(sys.argv[5]), int(sys.argv[6])
KEYCTL_JOIN_SESSION_KEYRING, KEY_SPEC_SESSION_KEYRING = 1, -3
assert libc.syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, None) > 0
secret = sys.argv[3].encode()
key = libc.syscall(SYS_add_key, b"user", b"isolation-escape", secret, len(secret), KEY_SPEC_SESSION_KEYRING)
assert key > 0, ctypes.get_errno()
cmd = [sys.argv[2], "-c", sys.argv[4], str(key), str(SYS_keyctl)]
if sys.argv[1] == "host":
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
else:
    res = isolation.run(cmd, backend=sys.argv[1], timeout=60)
    assert res.returncode == 0, res
    out = res.stdout
print(out.decode())
"""


# (add_key, keyctl) syscall numbers.
KEY_SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219), "riscv64": (217, 219), "ppc64le": (269, 271),
                "s390x": (278, 280)}


def test_the_callers_session_keyring_is_out_of_reach(backend: str) -> None:
    secret = "keyring-" + uuid.uuid4().hex
    machine = os.uname().machine
    assert machine in KEY_SYSCALLS, f"add the add_key/keyctl syscall numbers for {machine}"
    numbers = [str(n) for n in KEY_SYSCALLS[machine]]

    def caller(mode: str) -> Any:
        res = subprocess.run([sys.executable, "-c", KEYRING_CALLER, mode, PYTHON, secret, KEYRING, *numbers],
                             capture_output=True, timeout=120, check=False)
        assert res.returncode == 0, res.stderr.decode()
        return json.loads(res.stdout)

    out = caller(backend)
    assert out["read"] != secret and out["describe"] in ("EPERM", "EACCES", "ENOKEY"), out
    assert secret not in json.dumps(out)
    # Control: a plain child of the same caller inherits the session keyring and reads the key.
    host = caller("host")
    assert host["read"] == secret and host["describe"].startswith("user;"), host


SETID = """
import json, os, shutil, sys
ws = sys.argv[1]
out = {}
shutil.copy("/usr/bin/id", os.path.join(ws, "chmod"))
for name, op in (
    ("chmod", lambda: os.chmod(os.path.join(ws, "chmod"), 0o6755)),
    ("open", lambda: os.close(os.open(os.path.join(ws, "open"), os.O_CREAT | os.O_WRONLY, 0o6755))),
):
    try:
        op()
        out[name] = "done"
    except OSError as e:
        out[name] = type(e).__name__
print(json.dumps(out))
"""


def _setid_files(ws: Path) -> dict[str, str]:
    return {p.name: oct(p.stat().st_mode) for p in ws.iterdir() if p.stat().st_mode & (stat.S_ISUID | stat.S_ISGID)}


def test_no_setuid_or_setgid_file_lands_in_a_writable_bind(backend: str, tmp_path: Path) -> None:
    """A file the sandbox writes belongs to the caller's host uid (root, for a root caller).
    Were it allowed to set the set-user-ID or set-group-ID bit, it would leave behind a
    program that runs as that user for anyone on the host who can reach the directory.
    Mounts being nosuid inside does not help: the host honours the bit."""
    ws = tmp_path / "ws"
    host_ws = tmp_path / "host"
    ws.mkdir()
    host_ws.mkdir()
    try:
        sandboxed(backend, SETID, str(ws), policy=IsolationPolicy.from_effects([FsWrite(str(ws))]))
        assert _setid_files(ws) == {}, f"the sandbox planted set-id files on the host: {_setid_files(ws)}"
        # Control: the same probe run on the host does set the bits.
        on_host(SETID, str(host_ws))
        assert set(_setid_files(host_ws)) == {"chmod", "open"}
    finally:  # pytest keeps tmp_path around: leave no set-id program behind
        for d in (ws, host_ws):
            for p in d.iterdir():
                p.chmod(stat.S_IMODE(p.stat().st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
