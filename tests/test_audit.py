"""Audit log: one whole JSON line per run under concurrency; the plan record a reviewer reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from isolation import IsolationPolicy, PolicyError
from isolation.audit import PIPE_BUF, AuditLog, describe, redacted, write_audit_record

# Sizes on both sides of PIPE_BUF, up to a line far larger than a pipe's buffer.
SIZES = (10, PIPE_BUF - 200, PIPE_BUF + 1, 70_000, 400_000)

WRITER = """
import sys
from isolation.audit import AuditLog
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sizes = [int(s) for s in sys.argv[4].split(",")]
for i in range(n):
    AuditLog(path).append({"who": who, "i": i, "pad": chr(97 + i % 26) * sizes[i % len(sizes)]})
"""


def _check(lines: list[bytes]) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for raw in lines:
        doc = json.loads(raw)
        assert doc["pad"] == chr(97 + doc["i"] % 26) * len(doc["pad"])
        seen.setdefault(doc["who"], set()).add(doc["i"])
    return seen


def test_concurrent_threads_and_processes_never_interleave(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl")
    n = 40
    shared = AuditLog(path)

    def thread(who: str, log: AuditLog | None) -> None:
        for i in range(n):
            record = {"who": who, "i": i, "pad": chr(97 + i % 26) * SIZES[i % len(SIZES)]}
            if log is None:
                with AuditLog(path) as own:
                    own.append(record)
            else:
                log.append(record)

    sizes = ",".join(map(str, SIZES))
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, path, f"p{k}", str(n), sizes], cwd=os.getcwd())
        for k in range(4)
    ]
    threads = [threading.Thread(target=thread, args=(f"t{k}", shared if k % 2 else None)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    shared.close()
    data = Path(path).read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(lines) == 12 * n
    seen = _check(lines)
    assert seen == {w: set(range(n)) for w in [*(f"p{k}" for k in range(4)), *(f"t{k}" for k in range(8))]}
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_unwritable_log_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="audit log .*No such file"):
        AuditLog(str(tmp_path / "missing" / "audit.jsonl"))


def test_redaction_keeps_names_and_drops_chosen_values() -> None:
    record = {
        "env": {"PATH": "/usr/bin", "LANG": "C", "PIP_INDEX_URL": "https://u:tok@x"},
        "bwrap_argv": ["bwrap", "--setenv", "LANG", "C", "--setenv", "PIP_INDEX_URL", "https://u:tok@x", "--", "x"],
    }
    out = redacted(record)
    assert out["env"] == {"PATH": "/usr/bin", "LANG": "C", "PIP_INDEX_URL": "<redacted>"}
    assert out["bwrap_argv"][3] == "C" and out["bwrap_argv"][6] == "<redacted>" and "tok" not in json.dumps(out)
    assert record["env"]["PIP_INDEX_URL"] == "https://u:tok@x"  # the caller's dict is untouched


def test_python_level_record(tmp_path: Path) -> None:
    import isolation

    policy = IsolationPolicy()
    plan = describe(["true"], policy, backend="bwrap")
    result = isolation.run(["true"], policy, backend="bwrap")
    record = write_audit_record(str(tmp_path / "a.jsonl"), plan, result)
    line = json.loads((tmp_path / "a.jsonl").read_text())
    assert line == json.loads(json.dumps(record))
    assert line["outcome"] == "exited" and line["returncode"] == 0 and line["plan"]["argv"] == ["true"]
    assert line["enforced"] == list(result.enforced) and line["truncated"] is False


# -- CLI ---------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # A known environment: what the caller's shell, CI or nox happens to export
    # (NOX_CURRENT_SESSION looks like a secret) must not change the expectations.
    full = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH") if k in os.environ}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "isolation", *args], capture_output=True, text=True, env=full, timeout=120
    )


SECRETS = {"GITHUB_TOKEN": "ghp_secretvalue", "PIP_INDEX_URL": "https://user:hunter2@pypi.example/simple"}


def test_run_appends_the_plan_record_and_the_outcome(tmp_path: Path, backend: str) -> None:
    log = str(tmp_path / "audit.jsonl")
    args = ("--backend", backend, "--env", "PIP_INDEX_URL", "--memory", "1G", "--", "sh", "-c", "exit 3")
    r = cli("run", "--audit-log", log, *args, env=SECRETS)
    assert r.returncode == 3, r.stderr
    plan = json.loads(cli("plan", "--json", *args, env=SECRETS).stdout)
    assert plan["env_denied_secret_like"] == ["GITHUB_TOKEN"] and plan["env_passed_secret_like"] == ["PIP_INDEX_URL"]
    line = json.loads(Path(log).read_text())
    assert (line["outcome"], line["returncode"], line["backend"]) == ("exited", 3, backend)
    assert line["duration"] > 0 and "namespace:user" in line["enforced"] and line["missing"] == []
    # The same record `isolation plan --json` prints, except the values of caller-chosen variables.
    volatile = {"bwrap_argv"}  # holds per-run temporary file names
    assert {k: v for k, v in line["plan"].items() if k not in volatile} == {
        k: v for k, v in redacted(plan).items() if k not in volatile
    }
    assert "hunter2" not in Path(log).read_text() and "ghp_secretvalue" not in Path(log).read_text()

    r = cli("run", "--audit-log", log, "--backend", backend, "--timeout", "0.5", "--", "sleep", "30")
    assert r.returncode == 128 + 9
    line = json.loads(Path(log).read_text().splitlines()[1])
    assert line["outcome"] == "timeout" and "limit:wall_timeout=0.5:runner" in line["enforced"]


def test_refusals_are_logged_and_an_unwritable_log_refuses_the_run(tmp_path: Path) -> None:
    log = str(tmp_path / "audit.jsonl")
    r = cli("run", "--audit-log", log, "--backend", "bwrap", "--read", "/no/such/dir", "--", "true")
    assert r.returncode == 125
    line = json.loads(Path(log).read_text())
    assert line["outcome"] == "refused" and line["plan"] is None and line["error"]["type"] == "PolicyError"
    marker = tmp_path / "ran"
    r = cli("run", "--audit-log", str(tmp_path / "no" / "log"), "--unsafe-no-isolation", "--", "touch", str(marker))
    assert r.returncode == 125 and "audit log" in r.stderr and not marker.exists()


def test_plan_human_output_is_the_review_artifact(tmp_path: Path) -> None:
    r = cli("plan", "--backend", "bwrap", "--env", "PIP_INDEX_URL", "--max-pids", "5", "--memory", "1G",
            "--write", str(tmp_path), "--", "true", env=SECRETS)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for needle in (
        "backend:   bwrap (requested bwrap)",
        f"rw  rw-bind  {tmp_path} <- {tmp_path}  [policy]",
        "withheld, look like secrets: GITHUB_TOKEN",
        "PASSED, look like secrets: PIP_INDEX_URL",
        "seccomp:   profile default",
        "denied syscalls: ",
        "max_output=64M (by runner)",
        "limits:    ",
        "bwrap argv:\n  /usr/bin/bwrap ",
    ):
        assert needle in r.stdout, needle


def test_plan_says_what_best_effort_would_skip() -> None:
    doc = json.loads(cli("plan", "--json", "--backend", "bwrap", "--best-effort", "--", "true").stdout)
    assert doc["enforcement"] == "best_effort" and doc["limits"] == [
        {"name": "max_output", "value": 64 << 20, "enforced_by": "runner"}
    ]
    assert json.loads(cli("plan", "--json", "--backend", "bwrap", "--", "true").stdout)["enforcement"] == "strict"


def test_audit_log_records_the_rung_that_ran(tmp_path: Path) -> None:
    """Best effort without user namespaces (a child user namespace whose limit is 0, for
    real: tests/hostile.py): the log's plan is the host layout and names what the run lacked."""
    import hostile

    log = str(tmp_path / "audit.jsonl")
    r = hostile.cli("userns-max0", "run", "--audit-log", log, "--backend", "native", "--best-effort", "--", "true")
    assert r.returncode == 0, r.stderr
    line = json.loads(Path(log).read_text())
    assert line["plan"]["rung"] == "host" and line["plan"]["mounts"] == []
    assert line["plan"]["missing"] == line["missing"] and "namespace:user" in line["missing"]
    assert not [e for e in line["enforced"] if e.startswith("namespace:")]
    # A strict run there is refused, and logged so.
    r = hostile.cli("userns-max0", "run", "--audit-log", log, "--backend", "native", "--", "true")
    assert r.returncode == 125
    refused = json.loads(Path(log).read_text().splitlines()[1])
    assert refused["outcome"] == "refused" and "user.max_user_namespaces" in refused["error"]["message"]
    # control: with nothing refused, the namespaced rung, nothing missing
    r = hostile.cli("control", "run", "--audit-log", log, "--backend", "native", "--best-effort", "--", "true")
    ok = json.loads(Path(log).read_text().splitlines()[2])
    assert r.returncode == 0 and ok["plan"]["rung"] == "namespaces" and ok["missing"] == []
