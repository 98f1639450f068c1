"""Issue 15 item 5: `plan` lists fully denied syscalls apart from argument-restricted ones,
each restricted one with what is refused; checked against a real sandbox."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from isolation import IsolationPolicy, run
from isolation.seccomp import compile_profile, syscall_number
from isolation.seccomp_profile import rules_for

pytestmark = pytest.mark.security


def _plan_json() -> dict[str, object]:
    r = subprocess.run(
        [sys.executable, "-m", "isolation", "plan", "--json", "--backend", "bwrap", "--", "true"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stderr
    sc = json.loads(r.stdout)["seccomp"]
    assert isinstance(sc, dict)
    return sc


def test_denied_and_restricted_are_listed_apart() -> None:
    sc = _plan_json()
    denied, restricted = sc["denied"], {r["syscall"]: r["refused"] for r in sc["restricted"]}  # type: ignore[index,union-attr]
    assert not set(denied) & set(restricted)  # type: ignore[arg-type]
    for name in ("clone", "open", "openat", "ioctl", "socket"):
        assert name in restricted and name not in denied  # type: ignore[operator]
    assert "unshare" in denied and "mount" in denied  # type: ignore[operator]
    assert any("CLONE_NEWUSER" in c for c in restricted["clone"])
    assert any("TIOCSTI" in c for c in restricted["ioctl"])
    # Every rule of the profile is accounted for, once, on the side its conditions say.
    f = compile_profile("default")
    for rule in rules_for("default"):
        if syscall_number(rule.syscall) is None:
            continue
        if rule.when is None:
            assert rule.syscall in denied  # type: ignore[operator]
        elif rule.syscall not in denied:  # type: ignore[operator]
            assert any(rule.when.describe in c for c in restricted[rule.syscall])
    assert set(f.denied) == set(denied) | set(restricted)  # type: ignore[arg-type]


def test_plan_text_names_what_a_restricted_syscall_refuses() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "isolation", "plan", "--backend", "bwrap", "--", "true"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stderr
    denied_line = next(line for line in r.stdout.splitlines() if "denied syscalls" in line)
    listed = denied_line.split(": ", 1)[1].split(", ")
    assert "unshare" in listed and "openat" not in listed and "socket" not in listed
    assert "    openat: with S_ISUID or S_ISGID: EPERM" in r.stdout
    assert "    ioctl: TIOCSTI or TIOCLINUX or TIOCSETD: EPERM" in r.stdout


PROBE = r"""
import ctypes, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    rc = libc.syscall(nr, *args)
    return "ok" if rc >= 0 else os.strerror(ctypes.get_errno())
out = {}
out["unshare"] = call(int(sys.argv[1]), 0)
fd = os.open("/tmp/f", os.O_CREAT | os.O_WRONLY, 0o644)
out["openat"] = "ok"
os.close(fd)
try:
    os.open("/tmp/g", os.O_CREAT | os.O_WRONLY, 0o4755)
    out["openat_suid"] = "ok"
except OSError as e:
    out["openat_suid"] = e.strerror
socket.socket(socket.AF_UNIX).close()
out["socket_unix"] = "ok"
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    out["socket_packet"] = "ok"
except OSError as e:
    out["socket_packet"] = e.strerror
print(json.dumps(out))
"""


def test_restricted_syscalls_work_with_other_arguments_and_denied_ones_never(backend: str) -> None:
    nr = syscall_number("unshare")
    assert nr is not None
    res = run(["/usr/bin/python3", "-c", PROBE, str(nr)], IsolationPolicy(), backend=backend)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["unshare"] == "Operation not permitted"  # denied even with flags 0
    assert out["openat"] == "ok" and out["openat_suid"] == "Operation not permitted"
    assert out["socket_unix"] == "ok" and out["socket_packet"] == "Address family not supported by protocol"
