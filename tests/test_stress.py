"""Many sandboxes, sequential and concurrent: nothing leaks into or stays behind in the caller.

After the runs: the caller's descriptor table and mount table are unchanged, it
has no child (zombie or alive), and no process of any sandbox is left, including
background processes the sandboxed commands started and did not wait for.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from procs import child_pids, fd_table, processes_with

import isolation

pytestmark = [pytest.mark.security, pytest.mark.slow]


def _mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


@pytest.fixture
def clean_slate() -> Iterator[str]:
    """Yield a marker for sandboxed argv; afterwards assert nothing leaked."""
    marker = f"isolation-stress-{uuid.uuid4().hex}"
    fds, mounts = fd_table(), _mounts()
    yield marker
    assert fd_table() == fds
    assert _mounts() == mounts
    assert child_pids() == []
    assert processes_with(marker) == []


def _one(marker: str, i: int) -> None:
    # $0 carries the marker; the background sleep outlives the command unless the sandbox takes it down.
    res = isolation.run(["sh", "-c", 'sleep 600 & echo "$1"', marker, str(i)], backend="native", timeout=60)
    assert (res.returncode, res.stdout) == (0, f"{i}\n".encode()), res


def test_500_sequential_runs(clean_slate: str) -> None:
    for i in range(500):
        _one(clean_slate, i)
    # Control: the marker search does find a live process that carries it.
    probe = isolation.spawn(["sh", "-c", "sleep 600", clean_slate], backend="native")
    try:
        assert processes_with(clean_slate)
    finally:
        probe.kill()
        probe.wait()
        probe.close()


@pytest.mark.usefixtures("fds_for_200")
def test_200_concurrent_runs_from_threads(clean_slate: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(200)

    def worker(k: int) -> None:
        try:
            start.wait()
            _one(clean_slate, k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
