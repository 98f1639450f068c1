"""Stages on Dask workers (`StageExecutor(executor=client.get_executor())`): each worker
enforces the policy itself, results come back, and the native backend's prepared
sandboxes and their threads end with the workers.

Dask is the optional extra `isolation[dask]`; `nox -s tests` installs it, and
under nox a missing Dask fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import stage_funcs as sf
from test_examples import example, listener  # noqa: F401 - a fixture, used by name

import isolation
from isolation.backends import resolve_backend
from isolation.backends.native import settle

if "NOX_CURRENT_SESSION" in os.environ:
    import dask
    import distributed
else:
    dask = pytest.importorskip("dask", reason="Dask is not installed: pip install -e '.[test,dask]' (nox does)")
    distributed = pytest.importorskip("distributed", reason="pip install -e '.[test,dask]' (nox does)")

pytestmark = pytest.mark.security

PREPARE_THREADS = ("isolation-prepare",)


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


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_prepared_sandboxes_end_with_the_workers(start_method: str) -> None:
    """Run in a process of its own (tests/dask_workers.py): Dask's cluster leaves helpers
    (multiprocessing's resource tracker) to the process that started it."""
    if resolve_backend("auto").backend.name != "native":
        pytest.fail("the native backend (the one with prepared sandboxes) must be available here")
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH") if k in os.environ}
    r = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("dask_workers.py")), start_method],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    seen = json.loads(r.stdout.splitlines()[-1])
    assert seen["results"] == [2 * i for i in range(8)]
    deep, huge, fail, good = seen["errors"]
    assert deep["type"] == "StageFailed" and "nested 100001 levels deep, more than 50" in deep["error"]
    assert huge["type"] == "StageFailed" and "larger than 1048576 bytes" in huge["error"]
    assert huge["stdout"] == (1 << 20) + 1  # the worker kept no more
    assert fail["type"] == "StageRaised" and fail["error_type"] == "builtins.ValueError"
    assert "raised ValueError: boom" in fail["error"]
    assert good["type"] == "NoneType" and good["value"]["sum"] == 3  # control: a good reply, from the same run

    # Control: the workers prepared sandboxes, in threads, as child processes of their own.
    assert len(seen["ran"]) == 2
    for state in seen["ran"]:
        assert state["threads"] == sorted(PREPARE_THREADS) and state["prepared"], seen
    # A cluster that lives on: settle() on the workers let them go, threads and sandboxes.
    for state in seen["settled"]:
        assert state["threads"] == [] and state["prepared"] == [], seen
    assert seen["alive after settle"] == []
    # Closing the client and its cluster left no worker and no prepared sandbox behind.
    assert len(seen["ran again"]) == 2 and all(s["prepared"] for s in seen["ran again"]), seen
    assert seen["alive after close"] == [], "a worker or prepared sandbox outlived client.close()"
    pids = [s["pid"] for s in seen["ran again"]] + [p for s in seen["ran again"] for p in s["prepared"]]
    assert not any(map(_alive, pids))  # and after the client's process has ended


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def settled() -> Iterator[None]:
    """Afterwards, no prepared sandbox of this test is left waiting (later tests count them)."""
    yield
    settle()


def test_executor_errors_are_stage_results(backend: str, settled: None) -> None:
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
