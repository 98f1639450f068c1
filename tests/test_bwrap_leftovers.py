"""The bwrap backend's per-caller data directory (/tmp/isolation-data-<pid>-*) and a
root caller's device-node copies (isolation-dev-<pid>-*) do not accumulate: a caller
that dies without atexit (SIGKILL, os._exit, a fork-pool worker) leaves them behind,
and the next caller's first run sweeps them; a live caller's are never touched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

import pytest

from isolation import IsolationPolicy
from isolation.backends import devcopies, owned_dirs
from isolation.backends.bwrap import find_bwrap
from isolation.plan import build_plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed")

# Runs one sandbox, prints its data directory, then ends as argv[1] says:
# "exit" (os._exit: no atexit), "kill" (waits for the SIGKILL), "live" (until stdin closes),
# "fork" (a forked child runs and os._exits, like a fork-pool worker; the parent exits normally).
CALLER = """
import os, sys
import isolation
from isolation.backends import bwrap

how = sys.argv[1]
if how == "fork":
    pid = os.fork()
    if pid == 0:
        isolation.run(["true"], backend="bwrap")
        print(bwrap._data_dir[1], flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    sys.exit(0)
assert isolation.run(["true"], backend="bwrap").returncode == 0
print(bwrap._data_dir[1], flush=True)
if how == "exit":
    os._exit(0)
sys.stdin.read()
"""


def _caller(how: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen(
        [sys.executable, "-c", CALLER, how], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    path = proc.stdout.readline().strip()
    assert path.startswith(os.path.join(tempfile.gettempdir(), "isolation-data-")), path
    return proc, path


def test_dead_callers_data_dirs_are_swept_by_the_next_caller() -> None:
    live, live_dir = _caller("live")
    try:
        dead = []
        for how in ("exit", "fork", "kill"):
            proc, d = _caller(how)
            if how == "kill":
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            # Control: the dead caller really left its directory behind (no atexit ran).
            assert os.path.isdir(d), f"{how}: {d}"
            dead.append(d)
        nxt, next_dir = _caller("exit")
        nxt.wait()
        for d in dead:
            assert not os.path.exists(d), f"{d} of a dead caller was not swept"
        assert os.path.isdir(live_dir), "a live caller's data directory was swept"
    finally:
        assert live.stdin is not None
        live.stdin.close()
        live.wait()
    assert not os.path.exists(live_dir)  # a normal exit removes its own
    # The last one would be swept by whichever caller comes next; sweep it here so the suite leaves nothing.
    owned_dirs.sweep_dead_owners(tempfile.gettempdir(), "data")
    assert not os.path.exists(next_dir)


# Runs sandboxes one after another and from four threads at once and prints the directory
# each one's /dev/null was bound from (its mount's root); then ends as argv[1] says: "exit"
# (normally) or "dead" (os._exit, holding one more directory of copies it took itself).
DEV_CALLER = """
import json, os, sys, threading
import isolation
from isolation import IsolationPolicy
from isolation import IsolationPolicy
from isolation.backends import devcopies, owned_dirs
from isolation.plan import build_plan

def source():
    res = isolation.run(["/bin/sh", "-c", "grep ' /dev/null ' /proc/self/mountinfo"], backend="bwrap")
    assert res.returncode == 0, res
    return os.path.dirname(res.stdout.decode().split()[3])

seen = [source() for _ in range(4)]
threads = [threading.Thread(target=lambda: seen.append(source())) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
seen.append(source())
held = None
if sys.argv[1] == "dead":
    held = devcopies.take([m for m in build_plan(IsolationPolicy(), ["true"]).mounts if m.kind == "device"])
else:  # a forked child (the parent holds a directory made ahead) runs one sandbox and exits
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(w, source().encode())
        sys.exit(0)
    os.close(w)
    os.waitpid(child, 0)
    seen.append([child, os.read(r, 4096).decode()])
print(json.dumps([os.getpid(), seen, held]), flush=True)
if held is not None:
    os._exit(0)
"""


def _dev_caller(how: str) -> tuple[int, list[Any], str | None]:
    env = {**os.environ, "PYTHONPATH": REPO}
    out = subprocess.run([sys.executable, "-c", DEV_CALLER, how], env=env, capture_output=True, text=True, check=True)
    pid, seen, held = json.loads(out.stdout)
    return pid, seen, held


def _copies_of(pid: int) -> list[str]:
    return [e for e in os.listdir("/var/tmp") if e.startswith(f"isolation-dev-{pid}-")]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root caller's sandboxes get private device nodes")
@pytest.mark.skipif(
    bool(os.statvfs("/var/tmp").f_flag & os.ST_NODEV), reason="/var/tmp is nodev: the copies go elsewhere"
)
def test_each_sandbox_binds_device_copies_of_its_own_and_none_outlive_the_caller() -> None:
    """A root caller's sandbox binds private copies of the /dev nodes (it owns the host's):
    a directory made ahead by a worker thread is handed to exactly one run, never to two,
    and removed after; nothing is left once the caller exits, and what a caller that died
    without atexit held is swept by the next caller."""
    pid, seen, held = _dev_caller("dead")
    assert all("/isolation-dev-" in d for d in seen), seen  # private copies, not the host's /dev
    assert len(set(seen)) == len(seen) == 9, seen  # no directory bound by two sandboxes
    # Control: the caller died holding a directory, and left it behind.
    assert held is not None and os.path.isdir(held) and os.path.basename(held) in _copies_of(pid), held
    pid2, seen2, _ = _dev_caller("exit")
    assert not _copies_of(pid), "a dead caller's device copies were not swept by the next caller"
    child, forked = seen2.pop()
    # A forked child makes its own copies, never takes its parent's (made ahead before the fork).
    assert f"/isolation-dev-{child}-" in forked, (child, forked)
    assert not set(seen) & set(seen2) and len(set(seen2)) == 9 and forked not in seen2
    assert not _copies_of(pid2) and not _copies_of(child), "a caller that exited normally left device copies"


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root caller's sandboxes get private device nodes")
def test_a_directory_made_ahead_is_handed_out_once_and_only_while_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's directory made ahead goes to the next run, and to no other; one older
    than READY_MAX_AGE (a temporary-file cleaner may have removed it) is replaced; at
    close every directory the worker held is gone."""
    worker = devcopies._Worker()
    devices = [m for m in build_plan(IsolationPolicy(), ["true"]).mounts if m.kind == "device"]

    def ready() -> str:
        with worker._cond:  # the worker notifies once it has made one
            assert worker._cond.wait_for(lambda: worker._ready is not None, timeout=60)
            assert worker._ready is not None
            return worker._ready[1]

    try:
        first = worker.take(devices)  # nothing ready: made on the spot
        assert sorted(os.listdir(first)) == sorted(os.path.basename(m.target) for m in devices)
        worker.discard(first)
        ahead = ready()
        assert worker.take(devices) == ahead  # the one made ahead goes to the next run ...
        other = worker.take(devices)
        assert other not in (ahead, first)  # ... and to no other
        worker.discard(other)
        worker.discard(ahead)
        stale = ready()
        monkeypatch.setattr(devcopies, "READY_MAX_AGE", -1.0)
        fresh = worker.take(devices)
        assert fresh not in (stale, ahead, first) and os.path.isdir(fresh)
    finally:
        worker.close()
    assert not any(os.path.exists(d) for d in (first, ahead, other, stale)), "the worker left a directory behind"
    shutil.rmtree(fresh)  # taken, never discarded: the test's own
