"""Native-backend guarantees the bwrap backend does not make, and every rung of
its degradation ladder; each attack has a control where the same probe succeeds."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from commands import PYTHON
from procs import child_pids, fd_table, wait_until

import isolation
from isolation import IsolationPolicy
from isolation.backends import native
from isolation.backends.base import Stdio
from isolation.backends.native import NativeBackend, prepared
from isolation.backends.native.spawn import WaitingInit
from isolation.backends.native.spec import Shape
from isolation.errors import IsolationUnavailable, SandboxSetupError
from isolation.plan import build_plan
from isolation.policy import Bind

pytestmark = pytest.mark.security


def py(code: str, policy: IsolationPolicy | None = None, **kw: object) -> isolation.RunResult:
    return isolation.run([PYTHON, "-c", code], policy, backend="native", timeout=60, **kw)  # type: ignore[arg-type]


def mounted_at_data(host: Path) -> IsolationPolicy:
    return IsolationPolicy(ro_binds=(Bind(host=str(host), sandbox="/data"),))


# -- Landlock ---------------------------------------------------------------------

def test_landlock_denies_a_path_that_is_mounted_but_not_allowed(
    tmp_path: Path, host_lacking: Callable[[str], None]
) -> None:
    (tmp_path / "data").write_text("visible")
    policy = mounted_at_data(tmp_path)  # not under /tmp, whose own rule would cover it
    probe = "print(open('/data/data').read())"
    assert py(probe, policy).stdout == b"visible\n"  # control: mounted and allowed
    host_lacking("landlock-unlisted=/data")
    res = py(probe, policy)
    assert res.returncode != 0 and b"PermissionError" in res.stderr


TCP_BIND = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print('bound')"


def test_landlock_denies_tcp_without_network(host_lacking: Callable[[str], None]) -> None:
    res = py(TCP_BIND)
    assert res.returncode != 0 and b"PermissionError" in res.stderr
    assert py(TCP_BIND, IsolationPolicy(network=True)).stdout == b"bound\n"  # control: Network declared
    host_lacking("landlock-abi=3")  # control: an ABI without TCP rules leaves only the netns
    assert py(TCP_BIND).stdout == b"bound\n"


ABSTRACT_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\\0" + sys.argv[1]); print("connected")
except OSError as e:
    print("refused", e.errno)
"""


def test_abstract_listener_unreachable_even_with_network(
    abstract_listener: tuple[str, socket.socket], host_lacking: Callable[[str], None]
) -> None:
    name, _ = abstract_listener
    net = IsolationPolicy(network=True)
    argv = [PYTHON, "-c", ABSTRACT_CONNECT, name]
    res = isolation.run(argv, net, backend="native", timeout=60)
    assert res.stdout.startswith(b"refused"), res
    assert "landlock:abi=" in " ".join(res.enforced) and "scope" in " ".join(res.enforced)
    # Control 1: the probe connects from the host.
    host = subprocess.run(argv, capture_output=True, timeout=60, check=True)
    assert host.stdout == b"connected\n"
    # Control 2: without Landlock scoping (ABI 5) the shared network namespace lets it through,
    # so it is the scope rule, not something else, that refuses above.
    host_lacking("landlock-abi=5")
    res = isolation.run(argv, net, backend="native", timeout=60, enforcement="best_effort")
    assert res.stdout == b"connected\n" and "landlock:scope" in res.missing


def test_host_processes_cannot_be_signalled_even_without_a_pid_namespace(host_lacking: Callable[[str], None]) -> None:
    # A root caller's command runs as 65534 without a user namespace: the victim is that user's.
    victim = subprocess.Popen(["sleep", "60"], user=65534 if os.geteuid() == 0 else None)
    try:
        code = (
            f"import os\ntry:\n os.kill({victim.pid}, 0); print('signalled')\n"
            "except OSError as e:\n print('refused', e.errno)"
        )
        probe = [PYTHON, "-c", code]
        host_lacking("userns")  # no pid namespace: only Landlock's signal scope stands in the way
        res = isolation.run(probe, backend="native", timeout=60, enforcement="best_effort")
        assert res.stdout.startswith(b"refused"), res
        host_lacking("userns,landlock-abi=5")  # control: without the scope the same probe reaches it
        res = isolation.run(probe, backend="native", timeout=60, enforcement="best_effort")
        assert res.stdout == b"signalled\n", res
    finally:
        victim.kill()
        victim.wait()


# -- the degradation ladder ----------------------------------------------------------

@pytest.mark.parametrize(
    ("missing", "network", "refused_for"),
    [
        ("userns", False, "namespace:user"),
        ("landlock", False, "landlock:fs"),
        ("seccomp", False, "seccomp"),
        ("landlock-abi=5", True, "landlock:scope"),
    ],
)
def test_strict_refuses_what_the_host_lacks(
    host_lacking: Callable[[str], None], missing: str, network: bool, refused_for: str
) -> None:
    host_lacking(missing)
    with pytest.raises(IsolationUnavailable, match=refused_for):
        isolation.run(["true"], IsolationPolicy(network=network), backend="native")


@pytest.mark.parametrize("abi", [1, 2, 3, 4, 5, 6])
def test_older_landlock_abi_is_reported_exactly(host_lacking: Callable[[str], None], abi: int) -> None:
    host_lacking(f"landlock-abi={abi}")
    res = isolation.run(["true"], backend="native", enforcement="best_effort")
    assert res.returncode == 0
    claim = next(e for e in res.enforced if e.startswith("landlock:"))
    assert claim.startswith(f"landlock:abi={abi}:fs")
    expected = {"refer": 2, "truncate": 3, "net": 4, "ioctl_dev": 5, "scope": 6}
    assert sorted(m for m in res.missing if m.startswith("landlock:")) == sorted(
        f"landlock:{f}" for f, level in expected.items() if abi < level
    )
    # ABI 3 and older still run in strict mode without Network: nothing required is missing.
    assert isolation.run(["true"], backend="native").returncode == 0


def test_best_effort_without_seccomp_really_runs_unfiltered(host_lacking: Callable[[str], None]) -> None:
    status = "print([l for l in open('/proc/self/status') if l.startswith('Seccomp:')][0].split()[1])"
    assert py(status).stdout == b"2\n"  # control: filtered
    host_lacking("seccomp")
    res = py(status, enforcement="best_effort")
    assert res.stdout == b"0\n" and "seccomp" in res.missing
    assert not any(e.startswith("seccomp:") for e in res.enforced)


def test_best_effort_without_landlock_lists_it_and_loses_it(
    tmp_path: Path, host_lacking: Callable[[str], None]
) -> None:
    (tmp_path / "data").write_text("visible")
    policy = mounted_at_data(tmp_path)
    host_lacking("landlock-unlisted=/data")
    probe = "print(open('/data/data').read())"
    assert py(probe, policy).returncode != 0  # control: Landlock denies
    host_lacking("landlock")
    res = py(probe, policy, enforcement="best_effort")
    assert res.stdout == b"visible\n"
    assert "landlock:fs" in res.missing and not any(e.startswith("landlock:") for e in res.enforced)


def test_best_effort_without_user_namespaces(host_layout_dir: str, host_lacking: Callable[[str], None]) -> None:
    tmp_path = Path(host_layout_dir)  # the command's user may enter it: Landlock alone must deny the secret
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    readable = tmp_path / "readable"
    readable.mkdir()
    (readable / "f").write_text("ok")
    host_lacking("userns")
    policy = IsolationPolicy().with_read(str(readable))
    code = f"""
import errno
import os
print(open('{readable}/f').read())
for p in ('{secret}', '/etc/hostname'):
    try:
        open(p).read(); print('leak', p)
    except PermissionError:
        print('denied')
open(os.path.join(os.environ['TMPDIR'], 'x'), 'w').write('tmp ok')
open('w', 'w').write('work ok'); print(os.getcwd() != '/work')
"""
    res = py(code, policy, enforcement="best_effort")
    assert res.stdout == b"ok\ndenied\ndenied\nTrue\n", res
    assert {"namespace:user", "namespace:pid", "rootfs:minimal"} <= set(res.missing)
    # A root caller's command runs as 65534 on the host; anyone else's as the caller.
    assert ("ids:65534" in res.enforced) is (os.geteuid() == 0) is ("ids:65534" not in res.missing)
    assert not any(e.startswith("namespace:") for e in res.enforced)
    # Control: on the host the same secret is readable.
    assert secret.read_text() == "s3cret"


def test_best_effort_without_user_namespaces_refuses_remapped_paths(
    host_layout_dir: str, host_lacking: Callable[[str], None]
) -> None:
    tmp_path = Path(host_layout_dir)  # writable by the command's user (65534 for a root caller)
    host_lacking("userns")
    policy = IsolationPolicy(work_host=str(tmp_path))
    assert py("print(1)", policy, enforcement="best_effort").stdout == b"1\n"  # /work maps to the host dir
    moved = IsolationPolicy(ro_binds=(Bind(host=str(tmp_path), sandbox="/data"),))
    with pytest.raises(IsolationUnavailable, match="cannot appear at /data"):
        py("print(1)", moved, enforcement="best_effort")


# -- setup errors ----------------------------------------------------------------------

def test_setup_error_names_step_path_and_errno(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    plan = build_plan(IsolationPolicy().with_read(str(gone)), ["true"])
    gone.rmdir()  # vanishes between planning and spawning
    null = os.open(os.devnull, os.O_RDWR)
    before = fd_table()
    try:
        with pytest.raises(SandboxSetupError) as info:
            NativeBackend().launch(plan, Stdio(null, null, null))
        # The failed sandbox was killed and reaped; nothing of it is left with the caller.
        assert fd_table() == before and child_pids() == []
    finally:
        os.close(null)
    assert info.value.step == "open bind source"
    assert info.value.path == str(gone)
    assert info.value.errno == 2
    assert str(gone) in str(info.value)


def test_mounts_are_read_only_where_the_policy_says(tmp_path: Path) -> None:
    code = """
import errno
import os
for p in ('/usr', '/', '/etc/passwd', '/dev', '/proc/sys'):
    st = os.statvfs(p)
    print(p, bool(st.f_flag & os.ST_RDONLY))
for p in ('/tmp', '/work', '/dev/shm'):
    print(p, bool(os.statvfs(p).f_flag & os.ST_RDONLY))
"""
    out = py(code).stdout.decode().split("\n")
    assert out[:8] == [
        "/usr True", "/ True", "/etc/passwd True", "/dev True", "/proc/sys True",
        "/tmp False", "/work False", "/dev/shm False",
    ]


# -- namespaces prepared ahead of demand ----------------------------------------------

NS_PROBE = (
    "import os, socket; "
    "print(*(os.readlink(f'/proc/self/ns/{n}') for n in ('user', 'net', 'ipc')), "
    "open('/proc/self/uid_map').read().split(), [i for _, i in socket.if_nameindex()], "
    "open('/sys/class/net/lo/operstate').read().strip() if os.path.exists('/sys/class/net/lo') else 'no-sys')"
)


def _namespaces_seen(runs: int, before_each: Callable[[], object] = lambda: None) -> list[str]:
    """What `runs` sandboxes alive at the same time see (a freed namespace's number is reused)."""
    code = NS_PROBE + "; import sys, time; sys.stdout.flush(); time.sleep(60)"
    alive, seen = [], []
    try:
        for _ in range(runs):
            before_each()
            sb = isolation.spawn([PYTHON, "-c", code], backend="native")
            alive.append(sb)
            assert sb.stdout is not None
            seen.append(sb.stdout.readline().decode())
    finally:
        for sb in alive:
            sb.kill()
            sb.wait()
            sb.close()
    return seen


@pytest.mark.parametrize("mode", ["prepared-sandboxes", "on-demand"])
def test_every_sandbox_gets_its_own_user_net_and_ipc_namespaces(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    if mode == "on-demand":
        monkeypatch.setattr(prepared.POOL, "size", 0)
    native.settle()  # no sandbox prepared for another test's policy
    took = _take_spy(monkeypatch)
    py("pass")  # the first run starts the pool

    def prepared_one_ready() -> None:  # the pool builds while no run is starting
        if mode == "prepared-sandboxes":
            assert prepared.wait_ready() is not None

    seen = _namespaces_seen(12, prepared_one_ready)
    ids = [line.split()[:3] for line in seen]
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("user", "net", "ipc")]
    for kind in range(3):
        values = [i[kind] for i in ids]
        assert len(set(values)) == len(values), f"a namespace was shared between sandboxes: {values}"
        assert host[kind] not in values
    for line in seen:  # the same sandbox either way: nobody, loopback only
        assert "['65534'," in line and "['lo']" in line, line
    # Control: each mode really took the path it names (the pool refills between spawns).
    if mode == "on-demand":
        assert not any(took)
    else:
        assert sum(took) >= 6, took
    prepared.release()


def _prepared_pids() -> list[int]:
    """The inits of the pool's prepared sandboxes that wait as this process's children,
    each an isolation-init named by nothing but its own name (argv)."""
    kids = set(child_pids())
    found = []
    for sandbox in prepared.POOL.waiting():
        try:
            if sandbox.pid in kids and Path(f"/proc/{sandbox.pid}/cmdline").read_bytes() == b"isolation-init\0":
                found.append(sandbox.pid)
        except OSError:  # ended meanwhile
            continue
    return found


def test_prepared_sandboxes_wait_as_children_and_are_released() -> None:

    py("pass")
    wait_until(_prepared_pids, bound=5)
    waiting = _prepared_pids()
    assert len(waiting) == 1  # control: one is built for the policy just used
    # It is pid 1 of its own namespaces, not in the caller's.
    assert os.readlink(f"/proc/{waiting[0]}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{waiting[0]}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    native.settle()
    assert _prepared_pids() == [] and child_pids() == []


def test_a_prepared_sandbox_whose_bind_source_was_replaced_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    native.settle()
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("old")
    policy = mounted_at_data(data)
    probe = "print(open('/data/f').read())"
    assert py(probe, policy).stdout == b"old\n"
    wait_until(_prepared_pids, bound=5)
    built_for_old = _prepared_pids()
    assert built_for_old  # built for this policy, binding the directory as it was
    took = _take_spy(monkeypatch)
    data.rename(tmp_path / "gone")
    data.mkdir()
    (data / "f").write_text("new")
    assert py(probe, policy).stdout == b"new\n"
    assert took == [False]  # the one prepared for the old directory was not used
    assert set(built_for_old) <= set(_prepared_pids())  # it is still waiting, unused
    # Control: a sandbox prepared for the new directory is used, and it sees the live directory.
    wait_until(lambda: len(_prepared_pids()) > len(built_for_old), bound=5)
    (data / "f").write_text("newer")
    assert py(probe, policy).stdout == b"newer\n"
    assert took == [False, True]
    native.settle()


@pytest.mark.parametrize("mode", ["prepared-sandboxes", "on-demand"])
def test_the_command_starts_with_default_signal_handling(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The caller (Python) ignores SIGPIPE; the command must not inherit that, nor a blocked signal."""
    if mode == "on-demand":
        monkeypatch.setattr(prepared.POOL, "size", 0)
    native.settle()
    probe = "grep -E '^Sig(Ign|Blk)' /proc/self/status; tr '\\0' ' ' < /proc/1/cmdline"
    py("pass")
    if mode == "prepared-sandboxes":
        assert prepared.wait_ready() is not None
    took = _take_spy(monkeypatch)
    res = isolation.run(["sh", "-c", probe], backend="native")
    lines = res.stdout.decode().splitlines()
    assert lines[:2] == ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"], lines
    assert lines[2] == "isolation-init ", lines  # pid 1 on either path
    assert took == [mode == "prepared-sandboxes"]  # control: the path this run took
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # control: the caller does ignore it
    native.settle()


def test_a_prepared_sandbox_killed_while_waiting_is_replaced_by_one_built_on_demand() -> None:
    native.settle()
    py("pass")
    waiting = prepared.wait_ready()
    assert waiting is not None
    os.kill(waiting.pid, signal.SIGKILL)
    wait_until(lambda: Path(f"/proc/{waiting.pid}/stat").read_text().split()[2] == "Z")
    res = py("print('ran')")
    assert (res.returncode, res.stdout) == (0, b"ran\n"), res
    # Control: it was the one the run took (it is gone from the pool, reaped).
    assert all(s is not waiting for s in prepared.POOL.waiting())
    native.settle()
    assert waiting.pid not in child_pids()


def test_a_forked_child_does_not_keep_the_parents_prepared_sandboxes() -> None:
    native.settle()
    py("pass")
    waiting = prepared.wait_ready()
    assert waiting is not None
    os.fstat(waiting.control.fileno())  # control: the parent holds its socket
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                os.fstat(waiting.control.fileno())
                code = 2  # still open in the child
            except OSError:
                code = 0 if not prepared.POOL.waiting() else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    os.fstat(waiting.control.fileno())  # the parent's is untouched, and the sandbox still waits
    assert waiting.pid in _prepared_pids()
    native.settle()


# The seccomp filter is the sandbox's: loaded before isolation-init, inherited by the command.
FILTER_PROBE = (
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "ok = libc.ptrace(0, 0, None, None) == 0  # PTRACE_TRACEME: only the debug extension allows it\n"
    "pid1 = [l for l in open('/proc/1/status') if l.startswith('Seccomp:')]\n"
    "print('ptrace', 'ok' if ok else os.strerror(ctypes.get_errno()))\n"
    "print('pid1', pid1[0].split()[1])\n"
)


def test_a_prepared_sandbox_is_only_taken_by_a_run_of_its_own_seccomp_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    native.settle()
    py("pass")
    assert prepared.wait_ready() is not None  # a sandbox built under the default filter waits
    took = _take_spy(monkeypatch)
    debug = py(FILTER_PROBE, IsolationPolicy(seccomp="debug"))
    assert debug.stdout.decode().split("\n")[:2] == ["ptrace ok", "pid1 2"], debug
    assert took == [False]  # the waiting sandbox was not handed to a run of another filter
    default = py(FILTER_PROBE)
    assert default.stdout.decode().split("\n")[:2] == ["ptrace Operation not permitted", "pid1 2"], default
    assert took == [False, True]  # control: a run of its own filter takes it
    native.settle()


# -- argv and environment as large as execve takes, on every path (issue 11 C.18) ----------

COUNT_ARGS = (
    'n=0; for a; do n=$((n+${#a})); done; '
    'e=0; for v in 1 2 3 4; do eval "x=\\$BIG$v"; e=$((e+${#x})); done; echo $# $n $e'
)


def _take_spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each run from now on took a prepared sandbox."""
    took: list[bool] = []
    real_take = prepared.POOL.take

    def take(shape: Shape) -> WaitingInit | None:
        got = real_take(shape)
        took.append(got is not None)
        return got

    monkeypatch.setattr(prepared.POOL, "take", take)
    return took


def _ready_for(mode: str, policy: IsolationPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    if mode == "on-demand":
        monkeypatch.setattr(prepared.POOL, "size", 0)
        return
    py("pass", policy)
    assert prepared.wait_ready() is not None


@pytest.mark.parametrize("mode", ["prepared-sandboxes", "on-demand"])
def test_a_command_within_execves_limits_runs_on_every_path(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """About 1 MiB of argv and environment (each string under execve's 128 KiB): far over
    the 64 KiB a prepared sandbox's message used to take."""
    native.settle()
    policy = IsolationPolicy(env_allowlist=("BIG1", "BIG2", "BIG3", "BIG4"))
    for v in range(1, 5):
        monkeypatch.setenv(f"BIG{v}", "e" * (100 * 1024))
    _ready_for(mode, policy, monkeypatch)
    took = _take_spy(monkeypatch)
    args = ["a" * (120 * 1024)] * 5 + ["b"] * 1000
    res = isolation.run(["/bin/sh", "-c", COUNT_ARGS, "sh", *args], policy, backend="native", timeout=60)
    assert (res.returncode, res.stderr) == (0, b""), res
    assert res.stdout.split() == [b"1005", str(600 * 1024 + 1000).encode(), str(400 * 1024).encode()]
    assert took == [mode == "prepared-sandboxes"]  # control: the path this run took
    native.settle()


@pytest.mark.parametrize("oversized", ["total", "one-string"])
@pytest.mark.parametrize("mode", ["prepared-sandboxes", "on-demand"])
def test_a_command_beyond_execves_limits_fails_as_execve_does_on_every_path(
    monkeypatch: pytest.MonkeyPatch, mode: str, oversized: str
) -> None:
    native.settle()
    args = ["y" * (100 * 1024)] * 80 if oversized == "total" else ["z" * (129 * 1024)]
    with pytest.raises(OSError) as plain:  # control: what plain subprocess says of the same argv
        subprocess.run(["/bin/true", *args], check=False)
    assert plain.value.errno == errno.E2BIG
    before = fd_table()
    _ready_for(mode, IsolationPolicy(), monkeypatch)
    took = _take_spy(monkeypatch)
    with pytest.raises(SandboxSetupError) as exc:
        isolation.run(["/bin/true", *args], backend="native", timeout=60)
    assert (exc.value.step, exc.value.errno) == ("execve", errno.E2BIG)
    assert took == [mode == "prepared-sandboxes"]
    # The failed sandbox was killed and reaped; nothing of it is left with the caller.
    assert fd_table() == before and child_pids() == []


def test_a_command_the_control_socket_cannot_carry_inline_travels_in_a_memfd(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message over the socket's send buffer (a host with a tiny net.core.wmem_default)
    is refused with EMSGSIZE; the payload then travels in a memfd instead."""
    native.settle()
    _ready_for("prepared-sandboxes", IsolationPolicy(), monkeypatch)
    waiting = prepared.wait_ready()
    assert waiting is not None
    with socket.socket(fileno=os.dup(waiting.control.fileno())) as control:
        control.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sndbuf = control.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        arg = "q" * (2 * sndbuf)  # over the buffer, under the 32 KiB that travel inline
        assert 2 * sndbuf < 32 * 1024
        with pytest.raises(OSError) as refused:  # control: the socket refuses such a message
            control.send(arg.encode())
        assert refused.value.errno == errno.EMSGSIZE
    its_pidns = os.readlink(f"/proc/{waiting.pid}/ns/pid")
    took = _take_spy(monkeypatch)
    probe = 'echo ${#1}; readlink /proc/self/ns/pid'
    res = isolation.run(["/bin/sh", "-c", probe, "sh", arg], backend="native", timeout=60)
    assert (res.returncode, res.stdout) == (0, f"{len(arg)}\n{its_pidns}\n".encode()), res
    assert took == [True]  # that very sandbox ran it (not one built on demand after a failed send)
    native.settle()
