"""Stages on Dask workers (`StageExecutor(executor=client.get_executor())`): each worker
enforces the policy itself, results come back, and the native backend's prepared
sandboxes and their threads end with the workers.

Dask is the optional extra `isolation[dask]`; `nox -s tests` installs it, and
under nox a missing Dask fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import stage_funcs as sf
from test_examples import example, listener  # noqa: F401 - a fixture, used by name

import isolation

if "NOX_CURRENT_SESSION" in os.environ:
    import dask
    import distributed
else:
    dask = pytest.importorskip("dask", reason="Dask is not installed: pip install -e '.[test,dask]' (nox does)")
    distributed = pytest.importorskip("distributed", reason="pip install -e '.[test,dask]' (nox does)")

pytestmark = pytest.mark.security

PREPARE_THREADS = ("isolation-prepare", "isolation-prepare-ns")


def test_dask_pipeline(tmp_path: Path, backend: str, listener: int) -> None:  # noqa: F811
    data, private = tmp_path / "data", tmp_path / "private"
    data.mkdir()
    private.mkdir()
    (data / "a.txt").write_text("the quick brown fox\n")
    (data / "b.txt").write_text("jumps over the lazy dog again\n")
    secret = private / "secret.txt"
    secret.write_text("hunter2\n")
    args = ("dask_pipeline.py", str(data), "--secret", str(secret), "--connect", str(listener))

    r = example(*args, backend=backend)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "count_words(a.txt): 4 words" in r.stdout and "count_words(b.txt): 6 words" in r.stdout
    # A stage that declared nothing, on a worker: the host secret is not there, the network is refused.
    assert 'probe on a worker: {"connect": "denied: ' in r.stdout, r.stdout
    assert '"read secret": "denied: FileNotFoundError"}' in r.stdout, r.stdout
    assert "3 stages ran on " in r.stdout and f"own {backend} sandbox on a worker" in r.stdout
    assert "hunter2" not in r.stdout

    # Control: the same probe, with FsRead(secret) and Network declared, reads and connects.
    r = example(*args, "--grant", backend=backend)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'probe on a worker: {"connect": "ok", "read secret": "ok: 8 bytes"}' in r.stdout, r.stdout


def _pool_state() -> dict[str, object]:
    """On a worker: its pid, its prepared-sandbox threads and its prepared sandboxes (child processes)."""
    me, prepared = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            continue
        if parent == me and b"--prepared" in cmdline:
            prepared.append(int(pid))
    threads = sorted({t.name for t in threading.enumerate() if t.name in PREPARE_THREADS})
    return {"pid": me, "threads": threads, "prepared": prepared}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[object, object]]:
    import logging

    with dask.config.set({"distributed.worker.multiprocessing-method": request.param}):
        lc = distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        )
    client = distributed.Client(lc)
    yield lc, client
    client.close()
    lc.close()


@pytest.mark.parametrize("cluster", ["spawn", "fork"], indirect=True)
def test_prepared_sandboxes_end_with_the_workers(cluster: tuple[distributed.LocalCluster, distributed.Client]) -> None:
    if isolation.backends.resolve_backend("auto").backend.name != "native":
        pytest.fail("the native backend (the one with prepared sandboxes) must be available here")
    lc, client = cluster
    ex = isolation.StageExecutor(backend="native", executor=client.get_executor(pure=False))
    assert [r.unwrap()["sum"] for r in ex.run([sf.describe(i, [i]) for i in range(8)])] == [2 * i for i in range(8)]

    # Control: the workers now prepare sandboxes, in threads, as child processes of their own.
    def prepared_everywhere() -> dict[str, dict[str, object]]:
        return client.run(_pool_state)  # type: ignore[no-any-return]

    deadline = 600
    while deadline:
        ex.run([sf.describe(i, [i]) for i in range(4)])
        states = prepared_everywhere()
        if all(s["prepared"] and s["threads"] == sorted(PREPARE_THREADS) for s in states.values()):
            break
        deadline -= 1
        threading.Event().wait(0.1)
    assert all(s["prepared"] and s["threads"] == sorted(PREPARE_THREADS) for s in states.values()), states
    workers = [int(s["pid"]) for s in states.values()]  # type: ignore[call-overload]
    sandboxes = [pid for s in states.values() for pid in s["prepared"]]  # type: ignore[attr-defined]
    assert all(map(_alive, workers + sandboxes))

    # A cluster that lives on: settle() on the workers lets them go, threads and sandboxes.
    from isolation.backends.native import settle

    client.run(settle)
    for state in prepared_everywhere().values():
        assert state["threads"] == [] and state["prepared"] == [], state
    assert not any(map(_alive, sandboxes))

    # Closing the client and its cluster leaves no worker and no prepared sandbox behind.
    ex.run([sf.describe(i, [i]) for i in range(4)])
    states = prepared_everywhere()
    sandboxes = [pid for s in states.values() for pid in s["prepared"]]  # type: ignore[attr-defined]
    client.close()
    lc.close()
    assert not any(map(_alive, workers)), "a Dask worker outlived client.close()"
    assert not any(map(_alive, sandboxes)), "a prepared sandbox outlived its Dask worker"


def test_executor_errors_are_stage_results(tmp_path: Path, backend: str) -> None:
    """What the executor raises (a worker lost, a task it could not send) fails that stage only."""
    from concurrent.futures import Future, ThreadPoolExecutor

    class Flaky(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            if args and args[0].task.args[0] == 1:
                failed: Future[object] = Future()
                failed.set_exception(OSError("worker lost"))
                return failed
            return super().submit(fn, *args, **kwargs)

    with Flaky(max_workers=2) as pool:
        ex = isolation.StageExecutor(backend=backend, executor=pool)
        ok, lost, ok2 = ex.run([sf.describe(i, [i]) for i in range(3)])
    assert ok.unwrap()["sum"] == 0 and ok2.unwrap()["sum"] == 4
    assert isinstance(lost.error, isolation.StageFailed)
    assert "did not come back from the executor: OSError: worker lost" in str(lost.error)
    with pytest.raises(isolation.PolicyError, match="max_workers or executor"):
        isolation.StageExecutor(max_workers=2, executor=pool)
    with pytest.raises(isolation.PolicyError, match="concurrent.futures.Executor"):
        isolation.StageExecutor(executor=object())  # type: ignore[arg-type]
