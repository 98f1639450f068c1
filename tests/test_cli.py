"""The CLI contract: exit statuses, plan output, probe, warnings."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys

import pytest


def cli(*args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NOETHER_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "isolation", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=None if input is None else input.decode(),
        timeout=120,
        check=False,
    )


def test_exit_status_is_the_commands_own(backend: str) -> None:
    r = cli("run", "--backend", backend, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_signal_death_is_128_plus_n(backend: str) -> None:
    assert cli("run", "--backend", backend, "--", "sh", "-c", "kill -TERM $$").returncode == 128 + 15


def test_stdin_reaches_the_sandbox(backend: str) -> None:
    r = cli("run", "--backend", backend, "--", "cat", input=b"piped\n")
    assert r.stdout == "piped\n"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--", "no-such-command-xyz"], 127, "not found"),
        (["--", "/usr"], 126, "is a directory"),
        (["--read", "/no/such/path", "--", "true"], 125, "/no/such/path does not exist"),
        (["--effect", "teleport", "--", "true"], 125, "unknown effect"),
        (
            [
                "--",
            ],
            125,
            "no command",
        ),
    ],
)
def test_refusals_have_distinct_statuses_and_one_clear_line(args: list[str], status: int, message: str) -> None:
    r = cli("run", "--backend", "bwrap", *args)
    assert r.returncode == status, r.stderr
    assert message in r.stderr and r.stderr.startswith("isolation: error:") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_bad_policy_file_is_125(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "p.json")
    with open(path, "w") as f:
        f.write('{"schema": 1, "nework": true}')
    r = cli("run", "--policy", path, "--", "true")
    assert r.returncode == 125 and "unknown field(s) nework" in r.stderr


def test_json_output(backend: str) -> None:
    r = cli("run", "--json", "--backend", backend, "--", "sh", "-c", "echo hi; exit 3")
    assert r.returncode == 3
    doc = json.loads(r.stdout)
    assert doc["stdout"] == "hi\n" and doc["returncode"] == 3 and doc["backend"] == backend
    assert "namespace:user" in doc["enforced"]


def test_none_backend_warns_on_stderr_unless_opted_out() -> None:
    r = cli("run", "--backend", "none", "--", "true")
    assert r.returncode == 0 and "isolation: warning:" in r.stderr and "WITHOUT isolation" in r.stderr
    r = cli("run", "--unsafe-no-isolation", "--", "true")
    assert r.returncode == 0 and r.stderr == ""
    r = cli("run", "--", "true", env={"NOETHER_ISOLATION": "none"})
    assert r.returncode == 0 and r.stderr == ""
    r = cli("run", "--require-isolation", "--unsafe-no-isolation", "--", "true")
    assert r.returncode == 125 and "required" in r.stderr


def test_plan_runs_nothing_and_shows_everything(tmp_path: object) -> None:
    marker = os.path.join(str(tmp_path), "ran")
    r = cli(
        "plan",
        "--backend",
        "bwrap",
        "--effect",
        "network",
        "--write",
        str(tmp_path),
        "--env",
        "LANG",
        "--",
        "sh",
        "-c",
        f"touch {marker}",
        env={"GITHUB_TOKEN": "x"},
    )
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(marker)
    for needle in ("backend:   bwrap", f"rw  rw-bind  {tmp_path}", "network:   shared", "GITHUB_TOKEN", "bwrap argv:"):
        assert needle in r.stdout
    doc = json.loads(cli("plan", "--json", "--backend", "bwrap", "--", "true").stdout)
    assert doc["backend"] == "bwrap" and doc["network"] is False
    assert doc["bwrap_argv"][0].endswith("bwrap") and doc["bwrap_argv"][-2:] == ["--", "true"]
    work = {"kind": "tmpfs", "target": "/work", "source": None, "mode": "rw", "origin": "work", "size": 1 << 30}
    assert work in doc["mounts"]


def test_probe_reports_the_host() -> None:
    doc = json.loads(cli("probe", "--json").stdout)
    assert doc["bwrap"]["path"] == "/usr/bin/bwrap"
    assert doc["landlock_abi"] >= 1 and doc["seccomp"] is True
    assert doc["user_namespaces"]["available"] is True
    assert doc["auto"] in ("native", "bwrap")
    assert "auto picks:" in cli("probe").stdout


# -- plan and probe on hosts that lack features (tests/hostile.py simulates them for real) --


def test_plan_text_shows_the_host_layout_and_what_it_lacks() -> None:
    import hostile

    r = hostile.cli("userns-max0", "plan", "--backend", "native", "--best-effort", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "HOST LAYOUT (no user namespaces here)" in r.stdout
    assert "mounts:    none (no mount namespace)" in r.stdout
    missing = next(line for line in r.stdout.splitlines() if line.startswith("NOT enforced"))
    assert "namespace:user" in missing and "rootfs:minimal" in missing
    # control: on the same launcher with nothing refused, the namespaced sandbox and its mounts
    r = hostile.cli("control", "plan", "--backend", "native", "--best-effort", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "sandbox:   namespaces" in r.stdout and "mounts (applied in order):" in r.stdout
    assert "NOT enforced" not in r.stdout


def test_plan_refuses_as_the_strict_run_does() -> None:
    import hostile

    run = hostile.cli("apparmor-userns", "run", "--backend", "native", "--", "true")
    plan = hostile.cli("apparmor-userns", "plan", "--backend", "native", "--", "true")
    assert run.returncode == plan.returncode == 125
    assert plan.stdout == "" and run.stderr == plan.stderr
    assert "kernel.apparmor_restrict_unprivileged_userns" in plan.stderr


def test_probe_text_names_the_cause_and_picks_nothing_that_fails() -> None:
    import hostile

    r = hostile.cli("seccomp-denied", "probe")
    assert r.returncode == 0, r.stderr
    assert "seccomp:         no (seccomp(2) is refused" in r.stdout
    assert "auto picks:      nothing" in r.stdout
    r = hostile.cli("landlock-eopnotsupp", "probe")
    assert "landlock ABI:    unavailable (Landlock is built into the kernel but not enabled; fix: add" in r.stdout
    assert "auto picks:      bwrap" in r.stdout  # control: bwrap needs no Landlock, and it ran
    r = hostile.cli("control", "probe")
    assert "seccomp:         yes" in r.stdout and "auto picks:      native" in r.stdout


def test_a_profile_naming_the_removed_nested_sandbox_extension_is_refused(tmp_path: object) -> None:
    for name, seccomp in (("inner", "nested-sandbox"), ("ok", "debug")):
        with open(os.path.join(str(tmp_path), f"{name}.toml"), "w") as f:
            f.write(f"[profile.{name}]\nseccomp = '{seccomp}'\n")
    r = cli("plan", "--profile-file", os.path.join(str(tmp_path), "inner.toml"), "--profile", "inner", "--", "true")
    assert r.returncode == 125
    assert "'nested-sandbox' was removed" in r.stderr and "Landlock" in r.stderr
    control = cli("plan", "--profile-file", os.path.join(str(tmp_path), "ok.toml"), "--profile", "ok", "--", "true")
    assert control.returncode == 0, control.stderr


def test_max_output_is_enforced_when_streaming(backend: str) -> None:
    """--max-output without --json: what run() keeps passes, the rest is dropped, a notice says so (A.7)."""
    script = "head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2; exit 3"
    run = [sys.executable, "-m", "isolation", "run", "--backend", backend]
    r = subprocess.run([*run, "--max-output", "1M", "--", "sh", "-c", script], capture_output=True, timeout=120)
    assert r.returncode == 3
    assert r.stdout == b"\0" * (1 << 20)
    assert r.stderr.startswith(b"\0" * (1 << 20))
    notices = r.stderr[1 << 20 :].decode()
    drop = 3000000 - (1 << 20)
    assert notices == (
        f"isolation: stdout truncated at 1048576 bytes (--max-output); {drop} more bytes dropped\n"
        f"isolation: stderr truncated at 1048576 bytes (--max-output); {drop} more bytes dropped\n"
    )
    # The same limit with --json: the same bytes kept, the limit reported.
    doc = json.loads(cli("run", "--json", "--backend", backend, "--max-output", "1M", "--", "sh", "-c", script).stdout)
    assert doc["stdout"].startswith("\0" * (1 << 20)) and doc["output_truncated"]
    assert doc["limits_hit"] == ["max_output"]
    assert doc["outcome"] == "exited" and doc["returncode"] == 3
    # Control: under the default bound (64M) all of it passes.
    r = subprocess.run([*run, "--", "sh", "-c", script], capture_output=True, timeout=120)
    assert (r.returncode, len(r.stdout), len(r.stderr)) == (3, 3000000, 3000000)


def test_streaming_is_live_and_ctrl_c_reaches_the_command(backend: str) -> None:
    script = 'trap "echo got INT; exit 42" INT; echo ready; while :; do sleep 0.1; done'
    proc = subprocess.Popen(
        [sys.executable, "-m", "isolation", "run", "--backend", backend, "--", "sh", "-c", script],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"ready\n"  # relayed while the command still runs
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    if backend == "native":
        assert (proc.returncode, rest, err) == (42, b"got INT\n", b"")
    else:  # the signal reaches bubblewrap, which dies of it and takes the sandbox along (as before issue 11)
        assert (proc.returncode, rest, err) == (128 + signal.SIGINT, b"", b"")


def test_relayed_stdin_does_not_hold_up_the_end(backend: str) -> None:
    """The caller's stdin is relayed until the command ends, not until the caller closes it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "isolation", "run", "--backend", backend, "--", "sh", "-c", "read line; echo $line"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"first\n"
        assert proc.wait(timeout=120) == 0  # stdin is still open
    finally:
        proc.kill()
        proc.stdin.close()


def test_ctrl_c_after_the_end_gives_up_on_a_reader_that_is_stuck(backend: str) -> None:
    """Once the command has ended, Ctrl-C stops relaying output nobody reads, instead of waiting forever."""
    import uuid

    from procs import processes_with, wait_until

    marker = f"marker-{uuid.uuid4().hex}"
    r, w = os.pipe()  # never read: 64 KiB fill it, the rest waits in the CLI and its pipe from the sandbox
    proc = subprocess.Popen(
        [sys.executable, "-m", "isolation", "run", "--backend", backend, "--",
         "sh", "-c", "echo started >&2; head -c 100000 /dev/zero; exit 0", marker],
        stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(w)
    try:
        # First the command must have started (it says so on stderr, relayed live), then ended.
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 60)
        assert ready and proc.stderr.readline() == b"started\n", "the command never started"
        assert wait_until(lambda: processes_with(marker) == [proc.pid], bound=60), "the command never ended"
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1)  # control: the CLI is stuck on the pipe
        for _ in range(60):  # the first one may still reach the command's end as a forwarded signal
            proc.send_signal(signal.SIGINT)
            try:
                status = proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            pytest.fail("Ctrl-C did not end a CLI stuck on a reader after the command ended")
    finally:
        proc.kill()
        proc.wait()
        os.close(r)
    assert status == 0


def test_plan_into_a_reader_that_goes_away_ends_quietly() -> None:
    """`isolation plan | head -1`: no traceback, SIGPIPE's status (as a shell tool ends)."""
    import fcntl

    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # the plan (over 4 KiB) cannot fit: the CLI must block on it
    os.set_blocking(r, True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "isolation", "plan", "--", "true"], stdout=w, stderr=subprocess.PIPE
    )
    os.close(w)
    with os.fdopen(r, "rb", buffering=0) as reader:
        assert reader.read(1)  # control: the plan was being printed
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 128 + signal.SIGPIPE, err.decode()
