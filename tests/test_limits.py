"""Resource limits against the real kernel, each with a control run without the limit.

Backend-neutral (the `backend` fixture); both lanes: as root the kernel does
not apply RLIMIT_NPROC to the sandbox (its user maps to host uid 0), so there
`max_pids` is enforced by a cgroup v1 pids controller where the backend uses
one, and otherwise refused in strict mode and listed as missing in best effort.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc

import attrs
import pytest

import isolation
from isolation import FsWrite, IsolationPolicy
from isolation.backends import get_backend
from isolation.cgroups import PIDS_PREFIX, cgroup_status, pids_v1_parent
from isolation.errors import IsolationUnavailable
from isolation.limits import Limits

pytestmark = pytest.mark.usefixtures("no_leaks")

ROOT = os.geteuid() == 0
MiB = 1 << 20


def _policy(base: IsolationPolicy | None = None, **limits: int | float) -> IsolationPolicy:
    base = base or IsolationPolicy()
    return base.evolve(limits=attrs.evolve(base.limits, **limits))


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


_FORKER = """
    import os, time
    n = 0
    for _ in range(100):
        try:
            pid = os.fork()
        except OSError as exc:
            print("fork failed errno", exc.errno, flush=True)
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
    print("forked", n, flush=True)
"""
# Forks up to 100 sleeping children and reports; LINGERING then stays (for spawn()), QUICK exits.
LINGERING = _FORKER + "    time.sleep(60)\n"
QUICK = _FORKER


def _enforces_max_pids(backend: str) -> bool:
    return "max_pids" in getattr(get_backend(backend), "enforced_limits", frozenset())


def test_fork_bomb_is_contained_and_the_host_can_still_spawn(backend: str) -> None:
    if not _enforces_max_pids(backend):
        pytest.skip(f"{backend} does not enforce max_pids in this lane (see the test below)")
    pol = IsolationPolicy().with_python()
    with isolation.spawn(_py(LINGERING), _policy(pol, max_pids=20), backend=backend) as sb:
        assert sb.stdout is not None
        lines = [sb.stdout.readline(), sb.stdout.readline()]
        assert lines[0] == b"fork failed errno 11\n", lines  # EAGAIN
        forked = int(lines[1].split()[1])
        # The command itself is one of the 20 processes; each fork beyond fails.
        assert forked == 19, lines
        assert "limit:max_pids=20:rlimit" in sb.enforced or "limit:max_pids=20:cgroup-v1" in sb.enforced
        # While the sandbox sits at its limit, the host spawns as usual.
        assert subprocess.run(["true"], check=False).returncode == 0
        assert isolation.run(["true"], backend=backend).returncode == 0
    # Control: without the limit the same program forks all 100.
    with isolation.spawn(_py(LINGERING), pol, backend=backend) as sb:
        assert sb.stdout is not None
        assert sb.stdout.readline() == b"forked 100\n"


def test_a_fork_refused_by_a_pids_cgroup_is_reported(backend: str) -> None:
    if not (ROOT and _enforces_max_pids(backend)):
        pytest.skip("only a root caller's max_pids uses a cgroup (RLIMIT_NPROC refusals are not observable)")
    forker = _py(QUICK)
    pol = IsolationPolicy().with_python()
    res = isolation.run(forker, _policy(pol, max_pids=20), backend=backend, timeout=60)
    assert res.stdout == b"fork failed errno 11\nforked 19\n", res
    assert "limit:max_pids=20:cgroup-v1" in res.enforced and res.limits_hit == ("max_pids",)
    parent = pids_v1_parent()
    assert parent is not None
    assert not [d for d in os.listdir(parent) if d.startswith(f"{PIDS_PREFIX}{os.getpid()}-")]
    # Control: the same forks without the limit hit nothing.
    res = isolation.run(forker, pol, backend=backend, timeout=60)
    assert res.stdout == b"forked 100\n" and res.limits_hit == ()


def test_max_pids_is_not_claimed_where_it_is_not_enforced(backend: str) -> None:
    if _enforces_max_pids(backend):
        pytest.skip(f"{backend} enforces max_pids in this lane")
    assert ROOT, "RLIMIT_NPROC binds every unprivileged caller's sandbox"
    with pytest.raises(IsolationUnavailable, match="max_pids"):
        isolation.run(["true"], _policy(max_pids=20), backend=backend)
    res = isolation.run(["true"], _policy(max_pids=20), backend=backend, enforcement="best_effort")
    assert res.returncode == 0
    assert "limit:max_pids" in res.missing
    assert not any(e.startswith("limit:max_pids") for e in res.enforced)
    # Control: the other rlimits are claimed in this lane.
    res = isolation.run(["true"], _policy(max_open_files=64), backend=backend)
    assert "limit:max_open_files=64:rlimit" in res.enforced


def test_memory_hog_is_stopped(backend: str) -> None:
    hog = _py(
        """
        x = bytearray(384 << 20)
        print("allocated", len(x))
        """
    )
    pol = IsolationPolicy().with_python()
    res = isolation.run(hog, _policy(pol, memory=192 * MiB), backend=backend, timeout=60)
    assert res.returncode != 0 and b"allocated" not in res.stdout
    assert b"MemoryError" in res.stderr
    assert f"limit:memory={192 * MiB}:rlimit" in res.enforced
    control = isolation.run(hog, pol, backend=backend, timeout=60)
    assert (control.returncode, control.stdout) == (0, f"allocated {384 << 20}\n".encode())


def test_cpu_seconds_stops_a_busy_loop(backend: str) -> None:
    busy = ["sh", "-c", "while :; do :; done"]
    res = isolation.run(busy, _policy(cpu_seconds=1), backend=backend, timeout=60)
    assert res.outcome == "cpu" and res.limits_hit == ("cpu_seconds",), res
    assert res.signal_name() == "SIGXCPU"
    assert res.duration < 30
    # Control: without the limit only the wall-clock timeout ends it.
    control = isolation.run(busy, backend=backend, timeout=2)
    assert control.outcome == "timeout" and control.limits_hit == ("wall_timeout",)


def test_file_size_bomb_stops(backend: str, tmp_path: os.PathLike[str]) -> None:
    out = os.path.join(tmp_path, "big")
    pol = IsolationPolicy.from_effects([FsWrite(str(tmp_path))])
    bomb = ["sh", "-c", 'exec head -c 10000000 /dev/zero > "$0"', out]
    res = isolation.run(bomb, _policy(pol, max_file_size=MiB), backend=backend, timeout=60)
    assert res.outcome == "file_size" and res.signal_name() == "SIGXFSZ", res
    assert os.path.getsize(out) == MiB
    control = isolation.run(bomb, pol, backend=backend, timeout=60)
    assert (control.returncode, control.outcome) == (0, "exited")
    assert os.path.getsize(out) == 10_000_000


def test_max_open_files(backend: str) -> None:
    opener = _py(
        """
        fds = []
        try:
            while len(fds) < 200:
                fds.append(open("/dev/null"))
        except OSError as exc:
            print("failed errno", exc.errno)
        print("highest", fds[-1].fileno())
        """
    )
    pol = IsolationPolicy().with_python()
    res = isolation.run(opener, _policy(pol, max_open_files=32), backend=backend)
    assert res.stdout == b"failed errno 24\nhighest 31\n", res  # EMFILE at the limit
    control = isolation.run(opener, pol, backend=backend)
    assert control.stdout.startswith(b"highest ")


def test_output_beyond_max_output_is_truncated_with_a_report(backend: str) -> None:
    ten = ["head", "-c", str(10 * MiB), "/dev/zero"]
    res = isolation.run(ten, _policy(max_output=MiB), backend=backend)
    assert res.returncode == 0 and res.output_truncated and res.limits_hit == ("max_output",)
    assert res.stdout[:MiB] == bytes(MiB)
    assert res.stdout[MiB:] == b"\n[isolation: output truncated at %d bytes; %d more bytes dropped]\n" % (MiB, 9 * MiB)
    assert "limit:max_output=1048576:runner" in res.enforced
    control = isolation.run(ten, backend=backend)
    assert control.stdout == bytes(10 * MiB) and not control.output_truncated


def test_truncation_keeps_the_callers_memory_bounded(backend: str) -> None:
    tracemalloc.start()
    try:
        res = isolation.run(["head", "-c", str(64 * MiB), "/dev/zero"], _policy(max_output=MiB), backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.output_truncated
    assert peak < 8 * MiB, f"peak {peak} bytes while 64 MiB streamed through"


def test_cgroup_detection_reports_a_reason() -> None:
    status = cgroup_status()
    assert status.reason
    # Limits are enforced with rlimits on every host for now: nothing claims a cgroup.
    res = isolation.run(["true"], _policy(max_open_files=64), backend="bwrap")
    assert not any(e.startswith("limit:") and e.endswith(":cgroup") for e in res.enforced)


def test_cgroup_detection_on_a_hybrid_host() -> None:
    mountinfo = (
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    status = cgroup_status(mountinfo, "0::/\n")
    assert status.mount == "/sys/fs/cgroup/unified"
    assert cgroup_status("", "0::/\n").reason == "cgroup v2 is not mounted"
    assert cgroup_status(mountinfo, "1:pids:/\n").available is False


def test_limits_are_claimed_per_mechanism(backend: str) -> None:
    pol = _policy(cpu_seconds=5, memory=512 * MiB, max_open_files=64, max_file_size=MiB, wall_timeout=30)
    res = isolation.run(["sh", "-c", "ulimit -t; ulimit -v; ulimit -n; ulimit -f"], pol, backend=backend)
    assert res.stdout.split() == [b"5", str(512 * 1024).encode(), b"64", b"2048"], res  # -v KiB, -f 512-byte blocks
    for claim in (
        "limit:cpu_seconds=5:rlimit",
        f"limit:memory={512 * MiB}:rlimit",
        "limit:max_open_files=64:rlimit",
        f"limit:max_file_size={MiB}:rlimit",
        "limit:wall_timeout=30:runner",
    ):
        assert claim in res.enforced
    # Control: without limits, nothing is claimed and nothing is set.
    res = isolation.run(["sh", "-c", "ulimit -t; ulimit -f"], backend=backend)
    assert res.stdout.split() == [b"unlimited", b"unlimited"]
    # (and the bounds of the sandbox's own file systems, claimed on every run: test_sandbox_bounds.py)
    bounds = ("limit:tmpfs_size=", "limit:max_ptys=")
    claimed = [e for e in res.enforced if e.startswith("limit:") and not e.startswith(bounds)]
    assert claimed == [f"limit:max_output={64 * MiB}:runner"]


def test_limits_round_trip_through_json() -> None:
    pol = _policy(cpu_seconds=5, memory=512 * MiB, max_pids=64, max_file_size=MiB, max_output=MiB, wall_timeout=1.5)
    assert IsolationPolicy.from_json(pol.to_json()) == pol
    assert Limits.from_dict({"memory": "512M", "max_file_size": "1M"}).memory == 512 * MiB


def test_what_each_backend_measures(backend: str) -> None:
    busy = _py(
        """
        import time
        x = bytearray(64 << 20)
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
        """
    )
    res = isolation.run(busy, IsolationPolicy().with_python(), backend=backend, timeout=60)
    assert res.returncode == 0 and res.duration >= 0.3
    if backend == "bwrap":
        # bubblewrap's monitor exits before the sandbox's init has reaped anything: nothing honest to report.
        assert (res.cpu_time, res.peak_rss) == (None, None)
    if backend == "native":
        # isolation-init reaps every process of the sandbox; its rusage covers them all.
        assert res.cpu_time is not None
    if res.cpu_time is not None:
        assert res.cpu_time >= 0.3 and res.peak_rss is not None and res.peak_rss >= 64 * MiB
    # Control: backend none measures the command itself through wait4(2).
    host = isolation.run(busy, backend="none", unsafe_no_isolation=True, timeout=60)
    assert host.cpu_time is not None and host.cpu_time >= 0.3
    assert host.peak_rss is not None and host.peak_rss >= 64 * MiB
