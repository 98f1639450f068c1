"""Stages: effects become the sandbox, data crosses as JSON, refusals happen before anything runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stage_funcs as sf

import isolation
from isolation import FsRead, FsWrite, Network, PolicyError, StageFailed, StageRaised
from isolation.stage import BOOT


@pytest.fixture
def ex(backend: str) -> isolation.StageExecutor:
    return isolation.StageExecutor(backend=backend, max_workers=4)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on the host's loopback that accepts everything."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = False

    def serve() -> None:
        while not stop:
            try:
                srv.accept()[0].close()
            except OSError:
                return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop = True
    srv.close()


def test_python_stage_gets_json_arguments_and_returns_json(ex: isolation.StageExecutor) -> None:
    [r] = ex.run([sf.describe(1, (2, 3), label="x")])
    assert r.ok and r.value == {"sum": 6, "label": "x", "uid": 65534, "cwd": "/work", "nan_free": [1.5, None]}
    # What the stage prints goes to stderr: it cannot forge the reply.
    assert r.run is not None and b"forged by printing" in r.run.stderr
    assert r.run.argv[:4] == (sys.executable, "-I", "-c", BOOT)


def test_stage_errors_come_back_typed_with_the_traceback(ex: isolation.StageExecutor) -> None:
    raised, died, bad = ex.run([sf.fail("boom"), sf.die(3), sf.not_json()])
    assert isinstance(raised.error, StageRaised) and raised.error.error_type == "builtins.ValueError"
    assert raised.error.error_message == "boom" and raised.error.stage == "fail"
    assert 'stage_funcs.py", line' in raised.error.traceback and "raise ValueError(message)" in raised.error.traceback
    with pytest.raises(StageRaised, match="stage 'fail' raised ValueError: boom"):
        raised.unwrap()
    assert isinstance(died.error, StageFailed) and "no valid reply (exit status 3)" in str(died.error)
    assert isinstance(bad.error, StageRaised) and "not JSON data" in bad.error.error_message


def test_effects_are_the_sandbox(ex: isolation.StageExecutor, tmp_path: Path, listener: int) -> None:
    (tmp_path / "in.txt").write_text("secret input")
    out = tmp_path / "out.txt"
    results = ex.run(
        [
            sf.read_text(str(tmp_path / "in.txt")),  # no FsRead: not visible
            sf.read_text.with_effects(FsRead(str(tmp_path)))(str(tmp_path / "in.txt")),  # control
            sf.write_text.with_effects(FsRead(str(tmp_path)))(str(out), "x"),  # read-only: refused by the kernel
            sf.write_text.with_effects(FsWrite(str(tmp_path)))(str(out), "written"),  # control
            sf.connect(listener),  # no Network: the host's loopback is out of reach
            sf.connect.with_effects(Network)(listener),  # control
        ]
    )
    hidden, seen, ro, rw, offline, online = results
    assert isinstance(hidden.error, StageRaised) and hidden.error.error_type == "builtins.FileNotFoundError"
    assert seen.value == "secret input"
    assert isinstance(ro.error, StageRaised) and "Read-only file system" in ro.error.error_message
    assert rw.ok and out.read_text() == "written"
    assert str(offline.value).startswith("refused") and online.value == "connected"


def test_command_stages(ex: isolation.StageExecutor, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a\nb\nc\n")
    wc = isolation.command_stage("wc", ["wc", "-l"], effects=[FsRead(str(tmp_path))])
    false = isolation.command_stage("false", ["sh", "-c", "echo why >&2; exit 4"])
    counted, stdin, failed = ex.run([wc(str(tmp_path / "f")), wc(stdin=b"1\n2\n"), false()])
    assert counted.ok and counted.value.stdout.split()[0] == b"3"
    assert stdin.value.stdout.strip() == b"2"
    assert (
        isinstance(failed.error, StageFailed)
        and "exited with status 4" in str(failed.error)
        and "why" in str(failed.error)
    )
    assert failed.value.returncode == 4


def test_nothing_runs_when_one_stage_cannot(ex: isolation.StageExecutor, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    writer = sf.write_text.with_effects(FsWrite(str(tmp_path)))(str(marker), "x")
    for bad, error, message in [
        (sf.read_text.with_effects(FsRead("/no/such/dir"))("/no/such/dir/f"), PolicyError, "/no/such/dir does not"),
        (isolation.command_stage("x", ["no-such-tool-xyz"])(), isolation.CommandNotFound, "not found"),
        (sf.describe(1, {2}), PolicyError, "arguments must be JSON data"),
    ]:
        with pytest.raises(error, match=message):
            ex.run([writer, bad])
        assert not marker.exists()
    ex.run([writer])  # control: alone, it runs
    assert marker.read_text() == "x"


def test_stages_run_in_parallel_and_time_out(ex: isolation.StageExecutor) -> None:
    start = time.monotonic()
    results = ex.run([sf.snooze(1.5) for _ in range(4)])
    elapsed = time.monotonic() - start
    assert [r.value for r in results] == [1.5] * 4
    assert elapsed < 4.5, elapsed  # one after another would take more than 6 s
    quick = isolation.stage(timeout=0.5)(sf.snooze.func)
    [r] = ex.run([quick(30)])
    assert isinstance(r.error, StageFailed) and "timed out" in str(r.error) and r.run is not None and r.run.timed_out


def test_declaration_errors() -> None:
    def local() -> None: ...

    with pytest.raises(PolicyError, match="module-level function"):
        isolation.stage()(local)
    with pytest.raises(PolicyError, match="unknown effect"):
        isolation.stage(effects=["teleport"])
    with pytest.raises(PolicyError, match="non-empty"):
        isolation.command_stage("x", "ls -l")
    with pytest.raises(isolation.IsolationUnavailable, match="never runs a stage without isolation"):
        isolation.StageExecutor(backend="none").run([sf.snooze(0)])


def test_a_limit_the_backend_cannot_enforce_refuses_the_pipeline(backend: str, tmp_path: Path) -> None:
    from isolation.backends import get_backend
    from isolation.limits import Limits
    from isolation.runner import RUNNER_LIMITS

    enforced = RUNNER_LIMITS | getattr(get_backend(backend), "enforced_limits", frozenset())
    values = {"cpu_seconds": 60, "memory": 1 << 30, "max_pids": 64, "max_open_files": 256, "max_file_size": 1 << 20}
    missing = [name for name in values if name not in enforced]
    if not missing:
        pytest.skip(f"{backend} enforces every limit for this caller")
    marker = tmp_path / "ran"
    writer = sf.write_text.with_effects(FsWrite(str(tmp_path)))(str(marker), "x")
    limited = isolation.stage(limits=Limits(**{missing[0]: values[missing[0]]}))(sf.snooze.func)
    with pytest.raises(isolation.IsolationUnavailable, match=f"cannot enforce limits {missing[0]}"):
        isolation.StageExecutor(backend=backend).run([writer, limited(0)])
    assert not marker.exists()
    [r] = isolation.StageExecutor(backend=backend, enforcement="best_effort").run([limited(0)])
    assert r.ok and r.run is not None and f"limit:{missing[0]}" in r.run.missing


def test_a_hostile_reply_fails_only_its_own_stage(backend: str) -> None:
    """Too deep or too large, a reply is a StageFailed of its stage; the others' results stand (A.8)."""
    import stage_hostile as sh

    ex = isolation.StageExecutor(backend=backend, max_workers=4, max_reply=1 << 20, max_reply_depth=50)
    deep, big, good, within = ex.run([sh.deep(100_000), sh.huge(16), sf.describe(1, [2], label="x"), sh.deep(49)])
    assert isinstance(deep.error, StageFailed) and "nested 100001 levels deep, more than 50" in str(deep.error)
    assert isinstance(big.error, StageFailed) and "larger than 1048576 bytes" in str(big.error)
    assert big.run is not None and len(big.run.stdout) == (1 << 20) + 1  # no more was kept
    assert good.ok and good.value["sum"] == 3
    # Controls: at the bounds a reply is accepted (the reply object itself is one level).
    assert within.ok and within.value == json.loads("[" * 49 + "]" * 49)
    [small] = ex.run([sh.huge(0)])
    assert small.ok and small.value == [[]]
    with pytest.raises(PolicyError, match="max_reply_depth must be a positive integer"):
        isolation.StageExecutor(max_reply_depth=0)


MEASURE_RSS = """
import json, resource, sys
import isolation, stage_funcs as sf, stage_hostile as sh
ex = isolation.StageExecutor(backend=sys.argv[1], max_reply=1 << 20)
assert ex.run([sf.snooze(0), sh.huge(0)])[1].ok  # warm-up: every module, thread and buffer used once
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
[r] = ex.run([sh.huge(int(sys.argv[2]))])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth": (after - before) * 1024, "error": str(r.error)}))
"""


def test_a_huge_reply_costs_the_caller_about_its_bound(backend: str) -> None:
    """The caller's peak RSS grows by a small multiple of max_reply, whatever the stage sends."""
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tests).parent), tests])}
    r = subprocess.run(
        [sys.executable, "-c", MEASURE_RSS, backend, "64"], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "larger than 1048576 bytes" in doc["error"]
    assert doc["growth"] < 16 << 20, doc  # 64 MiB sent; decoding it would have cost ~1.5 GiB
