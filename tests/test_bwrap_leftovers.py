"""The bwrap backend's per-caller data directory (/tmp/isolation-data-<pid>-*) does
not accumulate: a caller that dies without atexit (SIGKILL, os._exit, a fork-pool
worker) leaves it behind, and the next caller's first run sweeps it; a live
caller's directory is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import pytest

from isolation.backends import bwrap
from isolation.backends.bwrap import find_bwrap

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
    bwrap._sweep_dead_owners(tempfile.gettempdir(), "data")
    assert not os.path.exists(next_dir)
