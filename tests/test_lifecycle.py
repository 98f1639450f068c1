"""Sandbox lifecycle: nothing outlives a run, whatever ends it; stdin, streaming, concurrency.

Every process of a sandboxed tree carries a unique marker in its argv (as $0 of
sh, and as an extra fraction of a second for sleep, which adds its arguments up),
so the tests can look for survivors in the host's /proc. Bounds are generous;
timings belong in benchmarks/.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from procs import child_pids, fd_table, processes_with, wait_until

import isolation
from isolation import IsolationPolicy
from isolation.backends import native
from isolation.limits import Limits

pytestmark = pytest.mark.usefixtures("no_leaks")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# sh -c SCRIPT MARKER: $0 is the marker. Seven processes: sh, an inner sh and five sleeps (the subshell execs its last).
_BG = """sleep 600 "$0" & (sleep 600 "$0" & sleep 600 "$0") & sh -c 'sleep 600 "$0"; :' "$0" & """
TREE = _BG + 'sleep 600 "$0"'
TREE_THEN_EXIT = _BG + "echo done"


def _marker() -> str:
    return f"0.{uuid.uuid4().int % 10**18:018d}"


def test_timeout_kills_the_whole_tree_before_run_returns(backend: str) -> None:
    marker = _marker()
    res = isolation.run(["sh", "-c", TREE, marker], backend=backend, timeout=1)
    assert res.outcome == "timeout" and res.timed_out
    assert res.duration < 20
    assert processes_with(marker) == []
    # Control: the same tree, left running, is found by the marker search.
    with isolation.spawn(["sh", "-c", TREE, marker], backend=backend) as sb:
        assert wait_until(lambda: len(processes_with(marker)) >= 7, bound=30)
        sb.kill()
        sb.wait()
        assert processes_with(marker) == []


def test_background_processes_die_with_the_command(backend: str) -> None:
    marker = _marker()
    res = isolation.run(["sh", "-c", TREE_THEN_EXIT, marker], backend=backend, timeout=60)
    assert (res.returncode, res.stdout, res.outcome) == (0, b"done\n", "exited")
    assert processes_with(marker) == []


def test_asyncio_cancellation_kills_and_reaps(backend: str) -> None:
    marker = _marker()

    async def main() -> None:
        task = asyncio.create_task(isolation.run_async(["sh", "-c", TREE, marker], backend=backend))
        await asyncio.sleep(0)
        assert await asyncio.to_thread(wait_until, lambda: len(processes_with(marker)) >= 7, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert processes_with(marker) == []


CALLER = """
import sys
import isolation
isolation.run(["sh", "-c", sys.argv[2], sys.argv[3]], backend=sys.argv[1])
"""


def test_sigkill_of_the_caller_leaves_no_sandboxed_process(backend: str) -> None:
    marker = _marker()
    env = {**os.environ, "PYTHONPATH": REPO}
    caller = subprocess.Popen([sys.executable, "-c", CALLER, backend, TREE, marker], env=env)
    try:
        # Control: the tree is up while its caller lives.
        # + the caller
        assert wait_until(lambda: len(processes_with(marker)) >= 8, bound=30), "the sandboxed tree never started"
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    assert wait_until(lambda: processes_with(marker) == [], bound=10), processes_with(marker)


CALLER_WITH_PIDS = """
import sys
import isolation
from isolation import IsolationPolicy
from isolation.limits import Limits
isolation.run(["sh", "-c", sys.argv[2], sys.argv[3]], IsolationPolicy(limits=Limits(max_pids=50)), backend=sys.argv[1])
"""


def test_a_killed_callers_pids_cgroup_is_swept(backend: str) -> None:
    from isolation.cgroups import PIDS_PREFIX, pids_v1_parent

    if not (os.geteuid() == 0 and "limit:max_pids=50:cgroup-v1" in _claims(backend)):
        pytest.skip(f"{backend} uses no pids cgroup in this lane")
    parent = pids_v1_parent()
    assert parent is not None
    marker = _marker()
    env = {**os.environ, "PYTHONPATH": REPO}
    caller = subprocess.Popen([sys.executable, "-c", CALLER_WITH_PIDS, backend, TREE, marker], env=env)
    try:
        assert wait_until(lambda: len(processes_with(marker)) >= 8, bound=30), "the sandboxed tree never started"
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    assert wait_until(lambda: processes_with(marker) == [], bound=10), processes_with(marker)
    stale = [d for d in os.listdir(parent) if d.startswith(f"{PIDS_PREFIX}{caller.pid}-")]
    assert len(stale) == 1  # control: the dead caller could not remove its own
    # Swept by a later run: the kernel may still be detaching the dead tasks (rmdir EBUSY)
    # during the first one, so allow a few.
    for _ in range(10):
        isolation.run(["true"], IsolationPolicy(limits=Limits(max_pids=50)), backend=backend)
        if not os.path.exists(os.path.join(parent, stale[0])):
            break
        time.sleep(0.2)
    assert not os.path.exists(os.path.join(parent, stale[0]))


def _claims(backend: str) -> tuple[str, ...]:
    return isolation.run(
        ["true"], IsolationPolicy(limits=Limits(max_pids=50)), backend=backend, enforcement="best_effort"
    ).enforced


def test_running_out_of_descriptors_is_a_typed_error(backend: str) -> None:
    native.settle()  # no descriptor of the native backend's background work comes or goes meanwhile
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        for fd in held[-3:]:  # room for a pipe, not for a sandbox
            os.close(fd)
        del held[-3:]
        with pytest.raises(isolation.SandboxSetupError, match="cannot start the sandbox"):
            isolation.run(["true"], backend=backend)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # Control: with descriptors to spare, the same run works.
    assert isolation.run(["true"], backend=backend).returncode == 0


def test_stdin_as_bytes_file_and_pipe(backend: str, tmp_path: os.PathLike[str]) -> None:
    assert isolation.run(["cat"], stdin=b"bytes\n", backend=backend).stdout == b"bytes\n"
    assert isolation.run(["cat"], stdin="text\n", backend=backend).stdout == b"text\n"
    path = os.path.join(tmp_path, "in")
    with open(path, "wb") as f:
        f.write(b"from a file\n" * 1000)
    with open(path, "rb") as f:
        assert isolation.run(["cat"], stdin=f, backend=backend).stdout == b"from a file\n" * 1000
    r, w = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(w, b"x" * 300_000), os.close(w)))
    feeder.start()
    try:
        res = isolation.run(["wc", "-c"], stdin=r, backend=backend)
    finally:
        feeder.join()
        os.close(r)
    assert res.stdout.strip() == b"300000"
    # Control: without stdin the sandbox reads an empty stream, not the caller's.
    assert isolation.run(["cat"], backend=backend).stdout == b""


def test_streaming_through_spawn(backend: str) -> None:
    cmd = ["sh", "-c", "for i in 1 2 3; do echo line $i; read ack; done; echo end"]
    with isolation.spawn(cmd, backend=backend, stdin=isolation.PIPE) as sb:
        assert sb.stdin is not None and sb.stdout is not None
        for i in (1, 2, 3):
            # Each line arrives while the command is still running (it waits for our ack).
            assert sb.stdout.readline() == f"line {i}\n".encode()
            assert sb.poll() is None
            sb.stdin.write(b"ok\n")
        assert sb.stdout.read() == b"end\n"
        assert sb.wait(timeout=30) == 0


@pytest.mark.usefixtures("fds_for_200")
def test_200_concurrent_runs_from_threads(backend: str) -> None:
    marker = _marker()
    results: dict[int, isolation.RunResult] = {}
    errors: list[BaseException] = []
    gate = threading.Barrier(200)

    def worker(k: int) -> None:
        try:
            gate.wait()
            results[k] = isolation.run(
                ["sh", "-c", 'sleep 600 & echo "$1"', marker, str(k)], backend=backend, timeout=120
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {k: (r.returncode, r.stdout) for k, r in results.items()} == {k: (0, f"{k}\n".encode()) for k in range(200)}
    assert processes_with(marker) == []


@pytest.mark.usefixtures("fds_for_200")
def test_200_concurrent_runs_from_an_event_loop(backend: str) -> None:
    marker = _marker()

    async def main() -> list[isolation.RunResult]:
        runs = [
            isolation.run_async(["sh", "-c", 'sleep 600 & echo "$1"', marker, str(k)], backend=backend, timeout=120)
            for k in range(200)
        ]
        return await asyncio.gather(*runs)

    results = asyncio.run(main())
    assert [(r.returncode, r.stdout) for r in results] == [(0, f"{k}\n".encode()) for k in range(200)]
    assert processes_with(marker) == []


def test_event_loop_stays_responsive_during_runs(backend: str) -> None:
    async def main() -> float:
        run = asyncio.create_task(isolation.run_async(["sleep", "1"], backend=backend))
        start = time.monotonic()
        ticks = 0
        while not run.done():
            await asyncio.sleep(0.01)
            ticks += 1
        assert (await run).returncode == 0
        return (time.monotonic() - start) / max(ticks, 1)

    # Control-free by nature; the bound is generous: the loop ticked while the sandbox ran.
    assert asyncio.run(main()) < 0.5


def test_starting_sandboxes_does_not_cut_another_threads_write_short(backend: str) -> None:
    """A blocking write of another thread of the caller runs to completion while
    sandboxes start and end (a SIGCHLD made pending on that thread would end it
    early with a short count)."""
    r, w = os.pipe()
    reader = subprocess.Popen(["sh", "-c", "sleep 0.5; wc -c"], stdin=r, stdout=subprocess.PIPE)
    os.close(r)
    wrote: list[int] = []

    def feed() -> None:
        wrote.append(os.write(w, b"x" * 4_000_000))
        os.close(w)

    feeder = threading.Thread(target=feed)
    feeder.start()
    runs = 0
    try:
        while feeder.is_alive():
            assert isolation.run(["true"], backend=backend).returncode == 0
            runs += 1
    finally:
        feeder.join()
        out, _ = reader.communicate()
    assert runs >= 3  # control: sandboxes did start and end while the write was blocked
    assert wrote == [4_000_000]
    assert out.strip() == b"4000000"


def test_repeated_runs_follow_the_host(backend: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a run resolves before spawning is remembered per call (isolation.resolution);
    every run still sees the environment, the executable and the bind sources as they are now."""
    bindir = os.path.join(str(tmp_path), "bin")
    os.mkdir(bindir)
    tool = os.path.join(bindir, "tool")
    with open(tool, "w") as f:
        f.write('#!/bin/sh\necho "$LANG"\n')
    os.chmod(tool, 0o755)
    policy = IsolationPolicy.from_effects([isolation.FsRead(bindir)])
    for lang in ("C", "C.UTF-8", "C"):
        monkeypatch.setenv("LANG", lang)
        assert isolation.run([tool], policy, backend=backend).stdout == f"{lang}\n".encode()
    os.chmod(tool, 0o644)
    with pytest.raises(isolation.CommandNotExecutable):
        isolation.run([tool], policy, backend=backend)
    os.chmod(tool, 0o755)
    assert isolation.run([tool], policy, backend=backend).returncode == 0
    # A bind source replaced by another directory at the same path: the run binds the new one.
    os.rename(bindir, bindir + ".old")
    os.mkdir(bindir)
    with open(tool, "w") as f:
        f.write("#!/bin/sh\necho replaced\n")
    os.chmod(tool, 0o755)
    assert isolation.run([tool], policy, backend=backend).stdout == b"replaced\n"
    os.rename(bindir, bindir + ".gone")
    with pytest.raises(isolation.PolicyError, match=f"{bindir} does not exist"):
        isolation.run([tool], policy, backend=backend)


def test_communicate_after_another_path_saw_the_end(backend: str) -> None:
    """The end can be seen by another thread's poll() before communicate() starts: it
    must not then wait on the descriptor that poll() closed (it waited forever)."""
    with isolation.spawn(["sh", "-c", "echo out"], backend=backend, stdout=subprocess.PIPE) as sb:
        wait_until(lambda: sb._child.poll() is not None)  # as another thread's poll would
        out, _ = sb.communicate(timeout=10)
    assert out == b"out\n" and sb.returncode == 0


def test_a_dropped_handle_releases_what_follows_the_end(backend: str) -> None:
    """A spawn() user who waits and drops the handle without close() leaves no process
    and no descriptor: the handle's finalizer releases the child (Child.release)."""
    before = fd_table()
    sb = isolation.spawn(["sh", "-c", "exit 7"], backend=backend)
    pid = sb.pid
    assert sb.wait() == 7
    # Control: the live handle still holds descriptors (its stdout and stderr pipes).
    assert {fd for fd, target in fd_table().items() if before.get(fd) != target}
    del sb
    gc.collect()
    assert {fd: target for fd, target in fd_table().items() if before.get(fd) != target} == {}
    assert pid not in child_pids()


def _slow_end(monkeypatch: pytest.MonkeyPatch, backend: str, act: object) -> str:
    """Patch the slow step of a sandbox's end to call `act(where)` first: the pids cgroup's
    removal where the run uses one (a root caller with max_pids), else native's layout
    cleanup (every native end runs it). Returns what was patched ("" if nothing: bwrap,
    unprivileged, has no such step)."""
    from isolation.cgroups import PidsCgroup

    if os.geteuid() == 0 and "limit:max_pids=50:cgroup-v1" in _claims(backend):
        real_remove = PidsCgroup.remove

        def remove(self: PidsCgroup, attempts: int = 200) -> bool:
            act(self.path)  # type: ignore[operator]
            return real_remove(self, attempts)

        monkeypatch.setattr(PidsCgroup, "remove", remove)
        return "cgroup"
    if backend == "native":
        real_cleanup = native.layout.Layout.cleanup

        def cleanup(self: native.layout.Layout) -> None:
            act("layout")  # type: ignore[operator]
            real_cleanup(self)

        monkeypatch.setattr(native.layout.Layout, "cleanup", cleanup)
        return "layout"
    return ""


def test_poll_does_not_wait_for_a_slow_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """poll() returns while another caller is still removing the sandbox's cgroup (C.16).

    Root lane: the removal of the pids cgroup is held up; unprivileged lane (no cgroup):
    the layout cleanup, the same step of the end."""
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    where: list[str] = []

    def hold(path: str) -> None:
        where.append(path)
        entered.set()
        release.wait(60)

    assert _slow_end(monkeypatch, "native", hold)
    sb = isolation.spawn(["sh", "-c", "exit 3"], IsolationPolicy(limits=Limits(max_pids=50)), backend="native")
    ended: list[int] = []

    def waiter() -> None:
        ended.append(sb.wait())
        finished.set()

    t = threading.Thread(target=waiter)
    t.start()
    try:
        assert entered.wait(60), "the sandbox never ended"
        polled = sb._child.poll()  # what a SIGINT handler's Sandbox.send_signal does first
        sb.send_signal(signal.SIGINT)
        held = not finished.is_set() and not release.is_set()
    finally:
        release.set()
        t.join()
    assert polled == 3 and held  # returned while the removal was still held up
    assert ended == [3]
    if where[0] != "layout":
        assert not os.path.exists(where[0])  # and the cgroup was removed all the same
    sb.close()


CTRL_C_WHILE_SETTLING = """
import json, os, signal, sys
from isolation import cli
from isolation.backends import native
from isolation.cgroups import PidsCgroup

where, backend = sys.argv[1], sys.argv[2]
seen = []

def interrupt(path):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the end is being settled
    seen.append(path)

if where == "cgroup":
    real_remove = PidsCgroup.remove
    def remove(self, attempts=200):
        interrupt(self.path)
        return real_remove(self, attempts)
    PidsCgroup.remove = remove
else:
    real_cleanup = native.layout.Layout.cleanup
    def cleanup(self):
        interrupt("layout")
        real_cleanup(self)
    native.layout.Layout.cleanup = cleanup
status = cli.main(["run", "--backend", backend, "--max-pids", "50", "--", "sh", "-c", "echo out; exit 3"])
print(json.dumps({"status": status, "seen": seen}))
"""


def test_ctrl_c_while_the_end_settles_does_not_deadlock_the_cli(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's SIGINT path while its main thread removes the cgroup (C.16): a handler that
    polled the sandbox waited for the lock the interrupted code held, forever. The CLI runs
    in a subprocess that slows its own removal (a deadlock is then a timeout, not a hang)."""
    where = _slow_end(monkeypatch, backend, lambda _: None)
    if not where:
        pytest.skip("bwrap without a pids cgroup (unprivileged lane) has no slow step at its end to interrupt")
    env = {**os.environ, "PYTHONPATH": REPO}
    r = subprocess.run(
        [sys.executable, "-c", CTRL_C_WHILE_SETTLING, where, backend],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out, report = r.stdout.rsplit("\n", 2)[:2] if r.stdout.count("\n") >= 2 else ("", r.stdout)
    doc = json.loads(report)
    assert out == "out" and doc["status"] == 3 and len(doc["seen"]) == 1
    if where == "cgroup":
        assert not os.path.exists(doc["seen"][0])
