"""Bounds on what a sandbox may read or take from the host's shared kernel state
(issue 11, A.3, A.5, A.6), against the real kernel on every backend:

- root-only host-wide /proc entries and the key lists are unreadable inside;
- every writable tmpfs (/tmp, /work, /dev/shm) ends at `Limits.tmpfs_bytes()` with ENOSPC;
- a sandbox's ptys are bounded (native: devpts max=; bwrap: none at all).

Each attack has a control: the same probe succeeding on the host, or inside where allowed.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from commands import PYTHON

import isolation
from isolation import IsolationPolicy
from isolation.limits import Limits

pytestmark = pytest.mark.security

MIB = 1 << 20


def sandboxed(backend: str, code: str, *args: str, policy: IsolationPolicy | None = None) -> Any:
    res = isolation.run([PYTHON, "-c", code, *args], policy, backend=backend, timeout=120)
    assert res.backend == backend
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return json.loads(res.stdout)


def on_host(code: str, *args: str) -> Any:
    res = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, timeout=120, check=False)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return json.loads(res.stdout)


# -- A.3: root-only /proc entries ---------------------------------------------------

# Each path argument: "ok" if it opens for reading, else the error's name. An attacker
# first tries to make it readable (a mask is a file mode 0000: chmod it back).
OPEN = """
import errno, json, os, sys
out = {}
for p in sys.argv[1:]:
    try:
        if not os.access(p, os.R_OK):
            os.chmod(p, 0o444)
    except OSError:
        pass
    try:
        os.close(os.open(p, os.O_RDONLY | os.O_NONBLOCK))
        out[p] = "ok"
    except OSError as e:
        out[p] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"""

ALLOWED_PROC = ("/proc/uptime", "/proc/self/status", "/proc/meminfo")


def host_root_only_proc_entries() -> list[str]:
    """The host's host-wide /proc files only their owner (root) may read (not per-process ones)."""
    found = []
    for top, dirs, files in os.walk("/proc"):
        if top == "/proc":
            dirs[:] = [d for d in dirs if not d.isdigit() and d not in ("self", "thread-self")]
        for name in files:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_mode & 0o400 and not st.st_mode & 0o004:
                found.append(path)
    return sorted(found)


@pytest.mark.parametrize("network", [False, True], ids=["no-network", "network"])
def test_root_only_proc_entries_are_unreadable_inside(backend: str, network: bool) -> None:
    entries = host_root_only_proc_entries()
    assert any(p.startswith("/proc/sys/") for p in entries) and "/proc/kpageflags" in entries
    if not network:
        # Without Network, /proc/sys/net inside shows the sandbox's own fresh network
        # namespace, not the host's: the host's entries there are not what it reads.
        entries = [p for p in entries if not p.startswith("/proc/sys/net/")]
    policy = IsolationPolicy(network=network)
    inside = sandboxed(backend, OPEN, *entries, *ALLOWED_PROC, policy=policy)
    readable = [p for p in entries if inside[p] == "ok"]
    assert readable == [], f"root-only host /proc entries readable inside: {readable}"
    # Control: the same probe does open an allowed /proc file inside.
    assert all(inside[p] == "ok" for p in ALLOWED_PROC), inside
    if os.geteuid() == 0:
        # Control: the host's root (the caller) opens them; inside, the masks are what stops it.
        host = on_host(OPEN, *entries)
        assert [p for p in entries if host[p] != "ok"] == [], host


KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_INVALIDATE = 21
# (add_key, keyctl) per machine
_KEY_SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219), "riscv64": (217, 219)}


@pytest.fixture
def marker_key() -> Iterator[str]:
    """A key whose description is a fresh marker, in this test process's session keyring."""
    numbers = _KEY_SYSCALLS.get(platform.machine())
    assert numbers is not None, f"add the add_key/keyctl syscall numbers for {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    marker = f"isolation-marker-{uuid.uuid4().hex}"
    payload = b"not-a-secret"
    serial = libc.syscall(numbers[0], b"user", marker.encode(), payload, len(payload), KEY_SPEC_SESSION_KEYRING)
    assert serial > 0, os.strerror(ctypes.get_errno())
    yield marker
    libc.syscall(numbers[1], KEYCTL_INVALIDATE, serial)


READ_KEYS = """
import errno, json, sys
out = {}
for p in ("/proc/keys", "/proc/key-users"):
    try:
        out[p] = open(p).read()
    except OSError as e:
        out[p] = "error:" + errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"""


def test_proc_keys_does_not_list_the_callers_keys(backend: str, marker_key: str) -> None:
    # Control: on the host, the same probe lists the marker.
    assert marker_key in on_host(READ_KEYS)["/proc/keys"]
    inside = sandboxed(backend, READ_KEYS)
    for path, text in inside.items():
        assert marker_key not in text
        assert text == "error:EACCES", (path, text)


# -- A.6: tmpfs bounds -----------------------------------------------------------------

# argv: bytes to write; then directories. Per directory: [bytes written, error name or "ok"].
FILL = """
import errno, json, os, sys
want = int(sys.argv[1])
out = {}
chunk = b"x" * (1 << 20)
for d in sys.argv[2:]:
    path = os.path.join(d, "fill")
    done, outcome = 0, "ok"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while done < want:
            done += os.write(fd, chunk[: want - done])
    except OSError as e:
        outcome = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        os.close(fd)
        os.unlink(path)
    out[d] = [done, outcome]
print(json.dumps(out))
"""

WRITABLE_TMPFS = ("/tmp", "/work", "/dev/shm")


@pytest.mark.parametrize(
    "limits",
    [Limits(tmpfs_size=8 * MIB), Limits(memory=64 * MIB)],
    ids=["tmpfs_size", "memory"],
)
def test_every_writable_tmpfs_ends_at_its_bound(backend: str, limits: Limits) -> None:
    bound = limits.tmpfs_bytes()
    if limits.tmpfs_size is None:  # the bound follows a `memory` below the default
        assert bound == limits.memory
    policy = IsolationPolicy(limits=limits)
    past = sandboxed(backend, FILL, str(bound + MIB), *WRITABLE_TMPFS, policy=policy)
    for d in WRITABLE_TMPFS:
        written, outcome = past[d]
        assert outcome == "ENOSPC" and bound - MIB <= written <= bound, (d, past[d])
    # Control: the same probe writes below the bound.
    below = sandboxed(backend, FILL, str(bound - MIB), *WRITABLE_TMPFS, policy=policy)
    assert below == {d: [bound - MIB, "ok"] for d in WRITABLE_TMPFS}


def test_the_default_tmpfs_bound_is_claimed_and_visible(backend: str) -> None:
    code = "import json, os; print(json.dumps({d: os.statvfs(d).f_blocks * os.statvfs(d).f_frsize for d in %r}))"
    res = isolation.run([PYTHON, "-c", code % (WRITABLE_TMPFS,)], backend=backend, timeout=60)
    assert res.returncode == 0, res
    bound = Limits().tmpfs_bytes()
    assert json.loads(res.stdout) == dict.fromkeys(WRITABLE_TMPFS, bound)
    assert f"limit:tmpfs_size={bound}:tmpfs" in res.enforced


# -- A.5: ptys ---------------------------------------------------------------------------

# argv: how many ptys to try to hold at once. Out: [opened, error name or "ok"].
PTYS = """
import errno, json, os, sys
held, outcome = [], "ok"
try:
    for _ in range(int(sys.argv[1])):
        held.append(os.openpty())
except OSError as e:
    outcome = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps([len(held), outcome]))
"""


@pytest.mark.parametrize("max_ptys", [3, 16])
def test_ptys_are_bounded(backend: str, max_ptys: int) -> None:
    policy = IsolationPolicy(limits=Limits(max_ptys=max_ptys))
    res = isolation.run([PYTHON, "-c", PTYS, str(max_ptys + 1)], policy, backend=backend, timeout=60)
    assert res.returncode == 0, res
    opened, outcome = json.loads(res.stdout)
    if backend == "native":
        assert [opened, outcome] == [max_ptys, "ENOSPC"]
        assert f"limit:max_ptys={max_ptys}:devpts" in res.enforced
        # Control: the bound itself is reachable.
        assert sandboxed(backend, PTYS, str(max_ptys), policy=policy) == [max_ptys, "ok"]
    else:  # bubblewrap's argv cannot bound a devpts: none is mounted, no ptys at all
        assert opened == 0 and outcome == "ENOENT"
        assert "limit:max_ptys=0:no-devpts" in res.enforced
    # Control: the host's own devpts gives the probe one more than the bound.
    assert on_host(PTYS, str(max_ptys + 1)) == [max_ptys + 1, "ok"]


def test_no_ptys_when_max_ptys_is_zero(backend: str) -> None:
    policy = IsolationPolicy(limits=Limits(max_ptys=0))
    res = isolation.run([PYTHON, "-c", PTYS, "1"], policy, backend=backend, timeout=60)
    assert res.returncode == 0, res
    assert json.loads(res.stdout) == [0, "ENOENT"]
    assert "limit:max_ptys=0:no-devpts" in res.enforced
    listing = sandboxed(backend, "import json, os; print(json.dumps(sorted(os.listdir('/dev'))))", policy=policy)
    assert "ptmx" not in listing and "pts" not in listing
    assert "null" in listing  # control: the listing works and shows the other nodes


# Runs in a mount namespace of its own where the host's /proc has a submount holding a
# root-only file at /proc/sys/fs/binfmt_misc (the one kind of place a user namespace may
# still mount a fresh proc over: an empty permanent directory). bubblewrap rebinds the
# host's /proc/sys with its submounts; the native backend's fresh one has none.
SUBMOUNT = """
import json, os, subprocess, sys
import isolation
from isolation import IsolationPolicy
d = "/proc/sys/fs/binfmt_misc"
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], check=True)
fd = os.open(d + "/secret", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"root only")
os.close(fd)
res = isolation.run([sys.argv[1], "-c", OPEN, d + "/secret", "/proc/uptime"], IsolationPolicy(),
                    backend=sys.argv[2], timeout=60)
print(json.dumps([res.returncode, json.loads(res.stdout or "{}"), res.stderr.decode(errors="replace")]))
""".replace("OPEN", repr(OPEN))


@pytest.mark.skipif(os.geteuid() != 0, reason="the host's root-only /proc entries are masked for root callers only")
def test_a_root_only_file_in_a_host_submount_of_proc_is_masked_too(backend: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(isolation.__file__)))}
    argv = ["unshare", "-m", "--propagation", "private", sys.executable, "-c", SUBMOUNT, PYTHON, backend]
    res = subprocess.run(argv, capture_output=True, timeout=120, check=False, env=env)
    assert res.returncode == 0, res.stderr
    rc, inside, stderr = json.loads(res.stdout)
    assert rc == 0, stderr
    assert inside["/proc/uptime"] == "ok"  # control
    # bwrap carries the submount in with the host's /proc/sys: masked there; native's fresh /proc lacks it.
    assert inside["/proc/sys/fs/binfmt_misc/secret"] == ("EACCES" if backend == "bwrap" else "ENOENT")
