"""`RunResult.enforced` never claims more than was enforced: every claim of a real run is
checked against what a probe observed inside that very run.

A claim this file has no check for fails the test (add the check with the claim),
and each check that compares with a capability the probe could exercise has a
control on the host showing that the probe detects it when nothing stops it.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import PYTHON

import isolation
from isolation import IsolationPolicy, landlock
from isolation.egress import MOUNT_DIR, PROXY_PORT, allowlist_digest, proxy_env
from isolation.limits import MOUNT_BOUNDS, Limits
from isolation.plan import build_plan
from isolation.rlimits import RLIMIT_LIMITS
from isolation.runner import RUNNER_LIMITS

pytestmark = pytest.mark.security

NOBODY = "65534"
NAMESPACES = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")
# What the root of the minimal view may hold (docs/policy.md), before the policy's own binds.
MINIMAL_ROOT = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "nix", "etc", "proc", "dev", "tmp", "work"}
SANDBOX_ENV = {"PATH", "HOME", "USER", "LOGNAME", "PWD"}  # PWD: bubblewrap exports the directory it entered
SECRET_VAR = "ISOLATION_CLAIMS_SECRET_TOKEN"
LEAKED_FD = 201

# Observations from inside. argv: [abstract socket name, directory for the whiteout node]
FACTS = """
import ctypes, errno, json, os, resource, socket, stat, sys
libc = ctypes.CDLL(None, use_errno=True)

def outcome(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def personality():
    if libc.personality(0x0040000) == -1:  # ADDR_NO_RANDOMIZE: refused by the default seccomp profile
        raise OSError(ctypes.get_errno(), "personality")

def tcp_bind():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))

def abstract_connect():
    with socket.socket(socket.AF_UNIX) as s:
        s.connect("\\0" + sys.argv[1])

def whiteout():  # a 0:0 character device needs no CAP_MKNOD; Landlock's make_char still governs it
    p = os.path.join(sys.argv[2], "whiteout-" + str(os.getpid()))
    os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    os.unlink(p)

def tcp_connect(port):
    with socket.socket() as s:
        s.settimeout(5)
        s.connect(("127.0.0.1", port))

def pty():
    master, slave = os.openpty()
    os.close(master)
    os.close(slave)

mounts = []  # [mount point, per-mount options, fs type, superblock options], in mount order
for line in open("/proc/self/mountinfo"):
    f = line.split()
    sep = f.index("-")
    mounts.append([f[4], f[5].split(","), f[sep + 1], f[sep + 3].split(",")])
writable_tmpfs = {}
for point, opts, fstype, _ in mounts:
    if fstype == "tmpfs" and "rw" in opts and point not in writable_tmpfs:
        try:
            st = os.statvfs(point)  # the file system now visible there
        except OSError:
            continue  # below a directory this user cannot search (host control only)
        writable_tmpfs[point] = [st.f_blocks * st.f_frsize, not st.f_flag & os.ST_RDONLY]

fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
def proc1(what):
    try:
        return open("/proc/1/" + what, "rb").read().decode(errors="replace")
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({
    "ns": {n: os.readlink("/proc/self/ns/" + n) for n in NAMESPACES},
    "status": {k: status[k].split() for k in
               ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")},
    "fds": fds,
    "root": sorted(os.listdir("/")),
    "env": dict(os.environ),
    "pid": os.getpid(),
    "sid": os.getsid(0),
    "proc1_cmdline": proc1("cmdline"),
    "proc1_uid": [l.split()[1] for l in proc1("status").splitlines() if l.startswith("Uid:")],
    "personality": outcome(personality),
    "whiteout": outcome(whiteout),
    "tcp_bind": outcome(tcp_bind),
    "abstract_connect": outcome(abstract_connect),
    "proxy_connect": outcome(lambda: tcp_connect(PROXY_PORT)),  # the egress proxy's port, inside
    "loopback_connect": outcome(lambda: tcp_connect(9)),  # a port nothing listens on
    "kill_pid1": outcome(lambda: os.kill(1, 0)),
    "mounts": mounts,
    "writable_tmpfs": writable_tmpfs,
    "pty": outcome(pty),
    "cgroup": {c: line.split(":", 2)[2] for line in open("/proc/self/cgroup").read().splitlines()
               for c in line.split(":", 2)[1].split(",")},
    "rlimits": {n: resource.getrlimit(getattr(resource, n))[0]
                for n in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE")},
}))
""".replace("NAMESPACES", repr(NAMESPACES)).replace("PROXY_PORT", str(PROXY_PORT))

RLIMIT_OF = {
    "cpu_seconds": "RLIMIT_CPU",
    "memory": "RLIMIT_AS",
    "max_pids": "RLIMIT_NPROC",
    "max_open_files": "RLIMIT_NOFILE",
    "max_file_size": "RLIMIT_FSIZE",
}
assert set(RLIMIT_OF) == RLIMIT_LIMITS

POLICIES: dict[str, tuple[IsolationPolicy, str]] = {
    "strict": (IsolationPolicy(), "strict"),
    "network": (IsolationPolicy(network=True), "strict"),
    "limits": (
        IsolationPolicy(limits=Limits(cpu_seconds=300, memory=4 << 30, max_pids=512, max_open_files=128,
                                      max_file_size=64 << 20, wall_timeout=120, max_output=1 << 20)),
        "best_effort",
    ),
    "bounds": (IsolationPolicy(limits=Limits(tmpfs_size=8 << 20, max_ptys=0)), "strict"),
    "egress": (IsolationPolicy(egress_allow=["pkgs.test-isolation.internal", "*.example.org:443"]), "strict"),
}


class Run:
    """One sandboxed run of FACTS and what the host looks like, for the checks."""

    def __init__(self, backend: str, policy: IsolationPolicy, enforcement: str, abstract: str) -> None:
        self.policy = policy
        self.argv = [PYTHON, "-c", FACTS, abstract, "/tmp"]
        self.result = isolation.run(self.argv, policy, backend=backend, timeout=60, enforcement=enforcement)
        assert self.result.returncode == 0, self.result
        self.facts: dict[str, Any] = json.loads(self.result.stdout)
        self.host_ns = {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES}


def check_namespace(run: Run, arg: str) -> None:
    name = {"mount": "mnt"}.get(arg, arg)
    assert name in NAMESPACES, arg
    assert run.facts["ns"][name] != run.host_ns[name]


def check_rootfs(run: Run, arg: str) -> None:
    assert arg == "minimal"
    tops = {b.sandbox.split("/")[1] for b in (*run.policy.ro_binds, *run.policy.rw_binds)}
    if run.policy.egress_allow:
        tops.add(MOUNT_DIR.lstrip("/"))  # the egress helper's directory
    assert set(run.facts["root"]) <= MINIMAL_ROOT | tops, run.facts["root"]


def check_ids(run: Run, arg: str) -> None:
    assert arg == NOBODY
    assert run.facts["status"]["Uid"] == [NOBODY] * 4 and run.facts["status"]["Gid"] == [NOBODY] * 4


def check_capabilities(run: Run, arg: str) -> None:
    assert arg == "none"
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(run.facts["status"][k][0], 16) == 0, k


def check_no_new_privs(run: Run, arg: str) -> None:
    assert arg == "" and run.facts["status"]["NoNewPrivs"] == ["1"]


def check_new_session(run: Run, arg: str) -> None:
    # getsid() answers 0 when the session's leader lies outside the caller's pid
    # namespace, i.e. when the command still belonged to the caller's session.
    assert arg == "" and run.facts["sid"] != 0


def check_fds(run: Run, arg: str) -> None:
    assert arg == "closed"
    extra = [fd for fd in run.facts["fds"] if fd > 2]
    assert LEAKED_FD not in extra and len(extra) <= 1, run.facts["fds"]  # at most the listing's own


def check_env(run: Run, arg: str) -> None:
    assert arg == "cleared"
    proxy = {k for k, _ in proxy_env()} if run.policy.egress_allow else set()
    assert set(run.facts["env"]) <= SANDBOX_ENV | set(run.policy.env_allowlist) | proxy, run.facts["env"]
    assert SECRET_VAR not in run.facts["env"]


def check_pid1(run: Run, arg: str) -> None:
    assert arg == "init"
    assert run.facts["pid"] != 1 and FACTS not in run.facts["proc1_cmdline"]


def check_seccomp(run: Run, arg: str) -> None:
    profile, _, digest = arg.partition(":sha256=")
    assert profile == run.policy.seccomp
    expected = build_plan(run.policy, run.argv).seccomp
    assert expected is not None and digest == expected.digest
    assert run.facts["status"]["Seccomp"] == ["2"]  # SECCOMP_MODE_FILTER
    if profile == "default":
        assert run.facts["personality"] == "EPERM"


def check_landlock(run: Run, arg: str) -> None:
    if arg.startswith("net:connect="):  # TCP only to the egress proxy's port
        assert int(arg.removeprefix("net:connect=")) == PROXY_PORT and run.policy.egress_allow
        assert run.facts["proxy_connect"] == "ok" and run.facts["loopback_connect"] == "EACCES"
        assert run.facts["tcp_bind"] == "EACCES"
        return
    abi_text, _, parts_text = arg.partition(":")
    abi = int(abi_text.removeprefix("abi="))
    parts = set(parts_text.split(","))
    assert 1 <= abi <= landlock.kernel_abi() and "fs" in parts and parts <= {"fs", "net", "scope"}
    assert run.facts["whiteout"] == "EACCES"  # /tmp is writable, but its rule omits make_char
    if "net" in parts:
        assert not run.policy.network and run.facts["tcp_bind"] == "EACCES"
    if "scope" in parts:
        # pid 1 runs as the same user but outside the Landlock domain.
        assert run.facts["proc1_uid"] == [NOBODY] and run.facts["kill_pid1"] == "EPERM"
        if run.policy.network:
            assert run.facts["abstract_connect"] == "EPERM"


def check_network(run: Run, arg: str) -> None:
    """`network:allowlist:sha256=...`: this policy's allowlist, served by a proxy inside a
    namespace of the sandbox's own, and the variables pointing clients at it."""
    policy = run.policy
    assert policy.egress_allow and not policy.network
    assert arg == f"allowlist:sha256={allowlist_digest(policy.egress_allow, policy.allow_local_addresses)}"
    assert run.facts["ns"]["net"] != run.host_ns["net"]
    assert all(run.facts["env"].get(k) == v for k, v in proxy_env()), run.facts["env"]
    assert run.facts["proxy_connect"] == "ok"  # the proxy is there, on its port


def check_tmpfs_size(run: Run, value: int, mechanism: str) -> None:
    assert mechanism == "tmpfs" and value == run.policy.limits.tmpfs_bytes()
    page = resource.getpagesize()
    tmpfs = run.facts["writable_tmpfs"]
    expected = {"/tmp", "/dev/shm"} | ({"/work"} if run.policy.work_host is None else set())
    assert expected <= set(tmpfs), tmpfs
    for point, (size, writable) in tmpfs.items():  # every tmpfs still writable inside carries the bound
        assert not writable or size == -(-value // page) * page, (point, size)


def check_max_ptys(run: Run, value: int, mechanism: str) -> None:
    top = {point: (fstype, sb) for point, _, fstype, sb in run.facts["mounts"]}  # later mounts shadow earlier
    if mechanism == "devpts":
        assert 0 < value == run.policy.limits.max_ptys
        assert top["/dev/pts"][0] == "devpts" and f"max={value}" in top["/dev/pts"][1], top["/dev/pts"]
        assert run.facts["pty"] == "ok"  # the probe does get a pty where the bound allows it
    else:
        assert mechanism == "no-devpts" and value == 0 <= run.policy.limits.max_ptys
        assert not any(fstype == "devpts" for fstype, _ in top.values()), top
        assert run.facts["pty"] != "ok"


def check_limit(run: Run, arg: str) -> None:
    setting, _, mechanism = arg.partition(":")
    name, _, value_text = setting.partition("=")
    if name == "tmpfs_size":
        return check_tmpfs_size(run, int(value_text), mechanism)
    if name == "max_ptys":
        return check_max_ptys(run, int(value_text), mechanism)
    requested = run.policy.limits.requested()
    assert name in requested and float(value_text) == requested[name], arg
    if mechanism == "runner":
        assert name in RUNNER_LIMITS
    elif mechanism == "cgroup-v1":
        # The sandbox was moved into a pids cgroup of its own after its cgroup namespace was
        # made, so it sees itself below that namespace's root.
        assert name == "max_pids" and run.facts["cgroup"].get("pids", "/") != "/", run.facts["cgroup"]
    else:
        assert mechanism == "rlimit" and name in RLIMIT_OF, arg
        soft = run.facts["rlimits"][RLIMIT_OF[name]]
        # The native backend allows max_pids one more for the sandbox's own init.
        assert soft == int(value_text) or (name == "max_pids" and soft == int(value_text) + 1), (arg, soft)


CHECKS: dict[str, Callable[[Run, str], None]] = {
    "namespace": check_namespace,
    "rootfs": check_rootfs,
    "ids": check_ids,
    "capabilities": check_capabilities,
    "no_new_privs": check_no_new_privs,
    "new_session": check_new_session,
    "fds": check_fds,
    "env": check_env,
    "pid1": check_pid1,
    "seccomp": check_seccomp,
    "landlock": check_landlock,
    "limit": check_limit,
    "network": check_network,
}


@pytest.fixture
def leaked_fd(tmp_path: Path) -> Iterator[int]:
    """An inheritable descriptor the caller holds while it runs the sandbox."""
    (tmp_path / "leak").write_text("fd")
    fd = os.open(tmp_path / "leak", os.O_RDONLY)
    os.dup2(fd, LEAKED_FD, inheritable=True)
    os.close(fd)
    yield LEAKED_FD
    os.close(LEAKED_FD)


@pytest.mark.parametrize("policy_name", POLICIES)
def test_every_claim_is_observed_in_the_run_that_made_it(
    backend: str,
    policy_name: str,
    abstract_listener: tuple[str, socket.socket],
    leaked_fd: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET_VAR, "secret-" + uuid.uuid4().hex)
    policy, enforcement = POLICIES[policy_name]
    run = Run(backend, policy, enforcement, abstract_listener[0])
    enforced = run.result.enforced
    assert len(set(enforced)) == len(enforced), enforced
    assert not set(enforced) & set(run.result.missing)
    # The core layers are claimed by every sandboxing backend.
    for core in ("namespace:user", "namespace:mount", "namespace:pid", "rootfs:minimal", "ids:65534",
                 "capabilities:none", "no_new_privs", "fds:closed", "env:cleared"):
        assert core in enforced, core
    assert ("namespace:net" in enforced) is (not policy.network)
    if policy.network:  # and the host network is really shared
        assert run.facts["ns"]["net"] == run.host_ns["net"]
    for claim in enforced:
        kind, _, arg = claim.partition(":")
        assert kind in CHECKS, f"claim {claim!r} has no check in tests/test_enforced_claims.py"
        CHECKS[kind](run, arg)
    # A requested limit is either claimed (by the backend or the runner) or listed as missing.
    for name in policy.limits.requested():
        assert any(c.startswith(f"limit:{name}=") for c in enforced) or f"limit:{name}" in run.result.missing, name
    # The bounds of the sandbox's own file systems are claimed on every run (or named missing).
    for name in MOUNT_BOUNDS:
        assert any(c.startswith(f"limit:{name}=") for c in enforced) or f"limit:{name}" in run.result.missing, name


def test_the_host_control_detects_what_the_checks_look_for(
    tmp_path: Path, abstract_listener: tuple[str, socket.socket], leaked_fd: int
) -> None:
    """The same FACTS probe run on the host sees every layer missing, so the checks can fail."""
    os.chmod(tmp_path, 0o777)
    res = subprocess.run([PYTHON, "-c", FACTS, abstract_listener[0], str(tmp_path)], capture_output=True, timeout=60,
                         check=True, close_fds=False)
    facts = json.loads(res.stdout)
    assert facts["personality"] == "ok" and facts["status"]["Seccomp"] == ["0"]
    assert facts["whiteout"] == "ok" and facts["tcp_bind"] == "ok" and facts["abstract_connect"] == "ok"
    assert facts["loopback_connect"] == "ECONNREFUSED"  # what check_landlock's net:connect sees as EACCES
    assert facts["status"]["NoNewPrivs"] == ["0"] and LEAKED_FD in facts["fds"]
    assert facts["status"]["Uid"][0] == str(os.getuid()) != NOBODY
    assert facts["ns"] == {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES}
    assert not set(facts["root"]) <= MINIMAL_ROOT
    assert facts["rlimits"]["RLIMIT_NOFILE"] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert facts["pty"] == "ok" and any(fstype == "devpts" for _, _, fstype, _ in facts["mounts"])
    shm = os.statvfs("/dev/shm")
    assert facts["writable_tmpfs"]["/dev/shm"] == [shm.f_blocks * shm.f_frsize, True]  # the host's own size


def test_the_runner_output_limit_holds(backend: str) -> None:
    policy = IsolationPolicy(limits=Limits(max_output=1000))
    res = isolation.run([PYTHON, "-c", "import sys; sys.stdout.write('x' * 100000)"], policy, backend=backend,
                        timeout=60)
    assert "limit:max_output=1000:runner" in res.enforced
    assert res.output_truncated and res.stdout.startswith(b"x" * 1000) and not res.stdout.startswith(b"x" * 1001)


def test_the_runner_wall_timeout_holds(backend: str) -> None:
    policy = IsolationPolicy(limits=Limits(wall_timeout=1))
    res = isolation.run([PYTHON, "-c", "import time; time.sleep(60)"], policy, backend=backend)
    assert "limit:wall_timeout=1:runner" in res.enforced
    assert res.outcome == "timeout" and res.duration < 30
