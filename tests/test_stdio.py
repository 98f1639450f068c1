"""The sandbox's stdio are its own pipes, never a host file of the caller (issue 11 A.2).

Whoever holds a descriptor can change the file's mode, owner and times
(fchmod, fchown, futimens) where the sandbox's user owns it on the host: a root
caller's sandbox runs as host uid 0, which owns /dev/null; an unprivileged
caller owns its terminal. Each test runs that probe on fds 0, 1 and 2 and
stats the host's files before and after; the controls show the same probe
changing a file the caller hands over explicitly, and a file in the sandbox's
own /tmp.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys

import pytest

import isolation
from isolation import DEVNULL, IsolationPolicy
from isolation.runner import Relay

pytestmark = pytest.mark.security

# Tries each metadata change on fds 0-2 and on a file of the sandbox's own /tmp; prints what worked.
PROBE = r"""
import json, os, stat, sys
def attack(fd):
    done = []
    for name, op in (("fchmod", lambda: os.fchmod(fd, 0o666)),
                     ("fchown", lambda: os.fchown(fd, os.getuid(), os.getgid())),
                     ("futimens", lambda: os.utime(fd, (1, 1)))):
        try:
            op()
            done.append(name)
        except OSError:
            pass
    return done
own = os.open("/tmp/own", os.O_CREAT | os.O_WRONLY, 0o600)
report = {"own_tmp": attack(own), "kinds": {}}
for fd in (0, 1, 2):
    report["kinds"][fd] = stat.S_IFMT(os.fstat(fd).st_mode)
    report[fd] = attack(fd)
os.write(3 if len(sys.argv) > 1 else 1, (json.dumps(report) + "\n").encode())
"""

POLICY = IsolationPolicy().with_python()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _meta(path_or_fd: str | int) -> tuple[int, int, int, int, int]:
    st = os.stat(path_or_fd)
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns)


def _pythonpath_env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("NOETHER_")}, "PYTHONPATH": REPO}


def test_default_stdio_are_the_sandboxes_own_pipes(backend: str) -> None:
    before = _meta("/dev/null")
    res = isolation.run([sys.executable, "-c", PROBE], POLICY, backend=backend)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert _meta("/dev/null") == before
    assert all(kind == stat.S_IFIFO for kind in report["kinds"].values())
    assert report["own_tmp"] == ["fchmod", "fchown", "futimens"]  # control: the probe works


def test_devnull_is_not_the_hosts(backend: str) -> None:
    before = _meta("/dev/null")
    with isolation.spawn(
        [sys.executable, "-c", PROBE, "to-fd-3"], POLICY, backend=backend, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
    ) as sb:
        assert sb.wait() == 0
    assert _meta("/dev/null") == before
    # spawn()'s defaults: stdin is empty (EOF at once), not /dev/null either.
    res = isolation.run(["sh", "-c", "cat; echo end"], backend=backend)
    assert res.stdout == b"end\n" and _meta("/dev/null") == before


def test_a_file_the_caller_passes_is_the_callers_risk(backend: str, tmp_path: os.PathLike[str]) -> None:
    """What docs/guide.md says: a descriptor handed over explicitly is the command's to change."""
    path = os.path.join(tmp_path, "out")
    with open(path, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        res = isolation.run([sys.executable, "-c", PROBE], POLICY, backend=backend, stderr=f)
    assert res.returncode == 0
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o666 and st.st_mtime == 1
    assert "futimens" in json.loads(res.stdout)["2"]
    # Relayed instead, the same file keeps its metadata and still gets the output.
    os.chmod(path, 0o600)
    os.utime(path, (5, 5))
    before = _meta(path)
    with open(path, "ab") as f:
        res = isolation.run([sys.executable, "-c", PROBE + "sys.stderr.write('relayed')"], POLICY, backend=backend,
                            stderr=Relay(f.fileno()))  # fmt: skip
    assert res.returncode == 0 and _meta(path)[:3] == before[:3] and _meta(path)[3] != 5 * 10**9
    with open(path, "rb") as f:
        assert f.read().endswith(b"relayed")


def _cli(backend: str, stdin: int, stdout: int, stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "isolation", "run", "--backend", backend, "--", "/usr/bin/python3", "-c", PROBE],
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=_pythonpath_env(),
        start_new_session=True,
    )


def test_cli_relays_its_pipes(backend: str) -> None:
    (r_in, w_in), (r_out, w_out), (r_err, w_err) = os.pipe(), os.pipe(), os.pipe()
    before = [_meta(fd) for fd in (r_in, r_out, r_err)]
    cli = _cli(backend, r_in, w_out, w_err)
    for fd in (r_in, w_out, w_err):
        os.close(fd)
    status = cli.wait(timeout=120)
    out, err = os.read(r_out, 65536), os.read(r_err, 65536)  # a few hundred bytes: they fit the pipes
    after = [_meta(fd) for fd in (w_in, r_out, r_err)]
    for fd in (w_in, r_out, r_err):
        os.close(fd)
    assert status == 0, err
    assert after == before
    report = json.loads(out)
    assert report["kinds"] == {"0": stat.S_IFIFO, "1": stat.S_IFIFO, "2": stat.S_IFIFO}
    assert report["own_tmp"] == ["fchmod", "fchown", "futimens"]  # control


def test_cli_relays_its_terminal(backend: str) -> None:
    """Run in a terminal, the CLI relays it: the command cannot make the user's pty 0666."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.fchmod(slave, 0o620)
    before = _meta(path)
    try:
        cli = _cli(backend, slave, slave, slave)
        os.close(slave)
        output = b""
        while select.select([master], [], [], 120)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal is gone
                break
            if not chunk:
                break
            output += chunk
        assert cli.wait(timeout=120) == 0, output
        after = _meta(path)
    finally:
        os.close(master)
    # Relayed output moves the terminal's mtime (in whole seconds); the probe's futimens would set it to 1.
    assert (after[:3], after[4]) == (before[:3], before[4]) and after[3] != 10**9
    report = json.loads(output.replace(b"\r\n", b"\n").strip().splitlines()[-1])
    assert report["kinds"] == {"0": stat.S_IFIFO, "1": stat.S_IFIFO, "2": stat.S_IFIFO}
    assert report["own_tmp"] == ["fchmod", "fchown", "futimens"]  # control
