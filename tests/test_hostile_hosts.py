"""Issue 11, section B: on hosts that lack what a sandbox needs (simulated for
real by tests/hostile.py), probe and auto never pick a backend that then fails,
strict runs refuse with a typed error that names the cause and the fix, best
effort runs with an exact `missing` or refuses, and plan says what run does."""

from __future__ import annotations

import json

import hostile
import pytest

pytestmark = pytest.mark.security

# What each simulated host refuses, checked from inside it (the harness's own test).
_KERNEL_FACTS = r"""
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def err(rc):
    return "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
pid = os.fork()
if pid == 0:
    os._exit(0 if libc.unshare(0x10000000) == 0 else ctypes.get_errno())
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
facts = {"unshare_user": "ok" if code == 0 else errno.errorcode.get(code, "?")}
facts["landlock"] = err(libc.syscall(444, None, 0, 1))
facts["seccomp"] = err(libc.syscall(317, 99, 0, None))  # no such operation: EINVAL when seccomp(2) is reachable
facts["mount"] = err(libc.mount(b"none", b"/nonexistent-hostile", b"tmpfs", 0, None))
print(json.dumps(facts))
"""

_EXPECTED_FACTS = {
    "control": {"unshare_user": "ok", "landlock": "ok", "mount": "ENOENT"},
    "userns-max0": {"unshare_user": "ENOSPC"},
    "docker-seccomp": {"unshare_user": "EPERM", "mount": "EPERM"},
    "landlock-eperm": {"landlock": "EPERM", "unshare_user": "ok"},
    "landlock-enosys": {"landlock": "ENOSYS"},
    "landlock-eopnotsupp": {"landlock": "EOPNOTSUPP"},
    "seccomp-denied": {"seccomp": "EPERM", "unshare_user": "ok"},
    "apparmor-userns": {"unshare_user": "ok", "mount": "EACCES"},
    "nested-bwrap": {"unshare_user": "EPERM"},
    "nested-native": {"unshare_user": "EPERM"},
}


@pytest.mark.parametrize("host", hostile.HOSTS)
def test_simulated_host_refuses_what_it_says(host: str) -> None:
    reason = hostile.unavailable(host)
    assert reason is None, reason
    proc = hostile.python(host, _KERNEL_FACTS)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    for key, want in _EXPECTED_FACTS[host].items():
        if want == "EOPNOTSUPP":
            assert facts[key] in ("EOPNOTSUPP", "ENOTSUP"), facts
        else:
            assert facts[key] == want, (key, facts)
    if host != "seccomp-denied":
        assert facts["seccomp"] == "EINVAL", facts  # seccomp(2) itself reachable: a bad argument, not EPERM
