"""When bubblewrap cannot set up the sandbox, nothing is claimed: the run raises
SandboxSetupError carrying bubblewrap's own message (CLI: exit 125, one line),
never a command exit with the full `enforced` list.

The refusals are real: a caller under a seccomp filter (libseccomp through cffi)
that refuses mounts as an AppArmor-restricted userns does, or that refuses
namespaces as Docker's default profile does, and a bind bubblewrap cannot mount.
Each has a control: the same command in the same launcher without the refusal.
The signal that the command really ran comes from `_isolation_exec` (see
native/bwrap_exec.c); a command whose execve fails is a SandboxSetupError too.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import hostile
import pytest

import isolation
from isolation import Bind, IsolationPolicy, SandboxSetupError
from isolation.backends.bwrap import find_bwrap
from isolation.limits import Limits

pytestmark = [
    pytest.mark.security,
    pytest.mark.usefixtures("no_leaks"),  # a failed start leaves no process, descriptor or cgroup
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed"),
]

# Run on a host from tests/hostile.py ("control", "apparmor-userns": mounts refused,
# "docker-seccomp": namespaces refused). argv: HOW ("control" or "docker-seccomp"
# decides the call below) CALL ("run" or "cli") then the command. Runs the command
# with the bwrap backend and prints the outcome as JSON ("run"), or becomes the CLI ("cli").
LAUNCHER = r"""
import json, sys

how, call, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
if call == "cli":
    from isolation.cli import main
    sys.exit(main(["run", "--backend", "bwrap", "--", *cmd]))

import isolation
from isolation.backends import Stdio
from isolation.backends.bwrap import BwrapBackend
from isolation.plan import build_plan

try:
    if how == "docker-seccomp":
        # What bwrap does when namespaces are refused, past the availability check
        # (which probes unshare, and would refuse earlier).
        launched = BwrapBackend().launch(build_plan(isolation.IsolationPolicy(), cmd), Stdio(0, 1, 2))
        out = {"returncode": launched.child.wait(), "enforced": list(launched.enforced)}
    else:
        r = isolation.run(cmd, backend="bwrap")
        out = {"returncode": r.returncode, "stdout": r.stdout.decode(), "enforced": list(r.enforced)}
except isolation.IsolationError as e:
    out = {"error": type(e).__name__, "message": str(e), "step": e.step, "errno": e.errno, "path": e.path}
print(json.dumps(out), flush=True)
"""


def _launch(how: str, call: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    """Run LAUNCHER on the simulated host `how` (tests/hostile.py)."""
    return hostile.launch(how, [sys.executable, "-c", LAUNCHER, how, call, *cmd])


def _outcome(how: str, *cmd: str) -> dict[str, object]:
    r = _launch(how, "run", *cmd)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout.splitlines()[-1]))


def test_mounts_refused_raise_setup_error_with_bwraps_message() -> None:
    out = _outcome("apparmor-userns", "sh", "-c", "echo ran")
    assert out["error"] == "SandboxSetupError", out
    assert "enforced" not in out and "returncode" not in out
    assert out["step"] == "mount" and out["errno"] == errno.EACCES, out
    msg = str(out["message"])
    assert "bubblewrap could not set up the sandbox, the command did not run" in msg
    assert os.strerror(errno.EACCES) in msg  # bubblewrap's own line, as it printed it
    # Control: the same launcher without the refusal runs the command.
    ok = _outcome("control", "sh", "-c", "echo ran")
    assert (ok["returncode"], ok["stdout"]) == (0, "ran\n"), ok
    assert "namespace:mount" in list(ok["enforced"])  # type: ignore[call-overload]


def test_namespaces_refused_raise_setup_error_naming_the_cause() -> None:
    out = _outcome("docker-seccomp", "true")
    assert out["error"] == "SandboxSetupError", out
    assert out["step"] == "unshare" and out["errno"] == errno.EPERM, out
    assert "namespace" in str(out["message"]) and "max_user_namespaces" in str(out["message"])
    # Control: without the filter the same launch runs.
    ok = _outcome("control", "true")
    assert ok["returncode"] == 0, ok


def test_the_cli_exits_125_with_one_line_and_the_command_never_runs(tmp_path: Path) -> None:
    r = _launch("apparmor-userns", "cli", "sh", "-c", "echo ran")
    assert r.returncode == 125, r
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("isolation: error: bubblewrap could not set up"), r.stderr
    # Control: the same CLI call without the refusal runs the command.
    ok = _launch("control", "cli", "sh", "-c", "echo ran")
    assert (ok.returncode, ok.stdout) == (0, "ran\n"), ok


@pytest.mark.parametrize("limits", [Limits(), Limits(max_open_files=64, max_pids=50)], ids=["plain", "with-limits"])
def test_a_bind_bwrap_cannot_mount_is_a_setup_error(tmp_path: Path, limits: Limits) -> None:
    """With limits, bubblewrap blocks for them after its mounts: the failure comes first."""
    src = tmp_path / "f"
    src.write_text("content")
    # /usr is bound read-only before the policy's binds: bubblewrap cannot create the mount point.
    bad = IsolationPolicy(ro_binds=[Bind(str(src), "/usr/isolation-t")], limits=limits)
    with pytest.raises(SandboxSetupError, match=r"the command did not run: Can't create file at /usr/isolation-t") as e:
        isolation.run(["true"], bad, backend="bwrap")
    assert (e.value.path, e.value.errno) == ("/usr/isolation-t", errno.EROFS)
    # Control: the same bind at a target bubblewrap can create.
    good = IsolationPolicy(ro_binds=[Bind(str(src), "/srv/isolation-t")], limits=limits)
    r = isolation.run(["cat", "/srv/isolation-t"], good, backend="bwrap")
    assert (r.returncode, r.stdout) == (0, b"content")


def test_bwraps_stderr_is_separate_from_the_commands() -> None:
    """The command's stderr is the caller's, unchanged; nothing extra is open in the sandbox."""
    r = isolation.run(["sh", "-c", "echo to-err >&2; ls /proc/self/fd"], backend="bwrap")
    assert r.returncode == 0 and r.stderr == b"to-err\n"
    assert sorted(r.stdout.split()) == [b"0", b"1", b"2", b"3"]  # 3: ls's own directory
    assert "fds:closed" in r.enforced


def test_a_command_whose_execve_fails_is_a_setup_error(tmp_path: Path) -> None:
    """The exec report's failure record: the command exists but cannot be executed inside."""
    script = tmp_path / "script"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    policy = IsolationPolicy().with_read(str(tmp_path))
    with pytest.raises(SandboxSetupError) as e:
        isolation.run([str(script)], policy, backend="bwrap")
    assert (e.value.step, e.value.errno, e.value.path) == ("execve", errno.ENOENT, str(script))
    # Control: with an interpreter that exists, it runs.
    script.write_text("#!/bin/sh\necho ran\n")
    assert isolation.run([str(script)], policy, backend="bwrap").stdout == b"ran\n"
