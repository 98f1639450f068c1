"""The record a reviewer reads (`isolation plan`) and the audit log a run appends it to.

`plan_record` is the one description of a sandbox: `isolation plan --json`
prints it and every audit line embeds it, so what was reviewed and what ran
are compared field by field. An audit line adds the outcome and is appended
with one ``write()`` on an ``O_APPEND`` descriptor (``flock`` held for lines
longer than PIPE_BUF), so concurrent runs sharing a log never interleave.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import re
import select
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from isolation.backends import Backend, Enforcement, Resolution, resolve_backend
from isolation.backends.bwrap import find_bwrap, plan_to_bwrap_args
from isolation.errors import PolicyError
from isolation.plan import SECRET_HINTS, SandboxPlan, build_plan, owner_warnings, writer_uid
from isolation.policy import DEFAULT_ENV_ALLOWLIST, IsolationPolicy
from isolation.result import RunResult
from isolation.runner import RUNNER_LIMITS

AUDIT_SCHEMA = 1
PIPE_BUF = select.PIPE_BUF
# Values an audit line keeps verbatim: the sandbox's fixed variables and the
# default allowlist. Anything else a caller chose to pass (an index URL, a
# token) is logged by name only, so the log can be shipped without leaking it.
_URL_CREDENTIALS = re.compile(r"://[^/@\s]*:[^/@\s]*@")
_LOGGED_VALUES = frozenset({"PATH", "HOME", "USER", "LOGNAME", *DEFAULT_ENV_ALLOWLIST})


def plan_record(plan: SandboxPlan, resolution: Resolution, *, enforcement: Enforcement = "strict") -> dict[str, Any]:
    """What `isolation plan --json` prints: the backend and why, then everything the plan enforces;
    for the native backend from the template its run uses (the rung, `enforced`, `missing`, the
    Landlock rules), so a best-effort run on the host layout is described as such."""
    backend = resolution.backend
    record: dict[str, Any] = {"backend": backend.name, "backend_reason": resolution.reason}
    record["enforcement"] = enforcement
    record.update(plan.to_dict())
    record["env_passed_secret_like"] = [k for k, v in plan.env if k not in _LOGGED_VALUES and _secret_like(k, v)]
    record["limits"] = limits_record(plan.policy, backend)
    if backend.name == "none":
        record["isolation"] = "NONE: the command runs on the host; nothing below is enforced except the environment"
    if backend.name == "bwrap":  # one rung: the namespaced sandbox, or a refusal
        record["bwrap_argv"] = plan_to_bwrap_args(plan, find_bwrap() or "bwrap")
        record.update(landlock=None, rung="namespaces", missing=[])
    describe = getattr(backend, "describe", None)
    if describe is not None:  # the native backend: the rung a run takes here, its claims and gaps
        record.update(describe(plan, enforcement))
    if backend.name != "none":
        record["warnings"] = owner_warnings(plan, writer_uid(record.get("rung")))
    return record


def _secret_like(name: str, value: str) -> bool:
    """A name like the ones `plan` calls out when withheld, or a URL carrying a password."""
    return any(h in name.upper() for h in SECRET_HINTS) or _URL_CREDENTIALS.search(value) is not None


def limits_record(policy: IsolationPolicy, backend: Backend) -> list[dict[str, Any]]:
    """Each requested limit and who enforces it: ``runner``, the backend's name, or None
    (strict enforcement refuses such a run; best effort runs without it and says so)."""
    by_backend: frozenset[str] = getattr(backend, "enforced_limits", frozenset())
    rows = []
    for name, value in policy.limits.requested().items():
        enforcer = "runner" if name in RUNNER_LIMITS else backend.name if name in by_backend else None
        rows.append({"name": name, "value": value, "enforced_by": enforcer})
    return rows


def describe(
    cmd: Sequence[str],
    policy: IsolationPolicy | None = None,
    *,
    backend: str | None = "auto",
    enforcement: Enforcement = "strict",
    unsafe_no_isolation: bool = False,
    require_isolation: bool | None = None,
) -> dict[str, Any]:
    """`plan_record` for a command as `isolation.run` would run it; runs nothing."""
    res = resolve_backend(backend, unsafe_no_isolation=unsafe_no_isolation, require_isolation=require_isolation)
    plan = build_plan(policy or IsolationPolicy(), cmd, check_executable=res.backend.name != "none")
    record = plan_record(plan, res, enforcement=enforcement)
    verify_host(res.backend, enforcement)
    return record


def verify_host(backend: Backend, enforcement: Enforcement) -> None:
    """Raise what a run would raise while setting up on this host: a plan describes a
    sandbox only where one can be built (a minimal real one, once per process; see
    `isolation.backends.canary`). Nothing of the caller's command runs."""
    verify = getattr(backend, "verify", None)
    if verify is not None:
        verify(enforcement)


def redacted(record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` with the values of caller-chosen variables replaced by ``<redacted>``
    (in ``env`` and in the bwrap argv's ``--setenv``)."""
    out = dict(record)
    if isinstance(out.get("env"), dict):
        out["env"] = {k: v if k in _LOGGED_VALUES else "<redacted>" for k, v in out["env"].items()}
    argv = out.get("bwrap_argv")
    if isinstance(argv, list):
        argv = list(argv)
        for i, arg in enumerate(argv[:-2]):
            if arg == "--setenv" and argv[i + 1] not in _LOGGED_VALUES:
                argv[i + 2] = "<redacted>"
        out["bwrap_argv"] = argv
    return out


def audit_record(
    plan: Mapping[str, Any] | None, result: RunResult | None = None, *, error: BaseException | None = None
) -> dict[str, Any]:
    """One audit line: when, who, the (redacted) plan record, and how the run ended.

    `plan` is None when the run was refused before a plan existed (an invalid
    policy); `error` is the refusal, and then ``outcome`` is ``refused``.
    """
    now = datetime.datetime.now(datetime.UTC)
    record: dict[str, Any] = {
        "audit_schema": AUDIT_SCHEMA,
        "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "caller": {"pid": os.getpid(), "uid": os.getuid(), "cwd": os.getcwd()},
        "plan": None if plan is None else redacted(plan),
    }
    if result is not None:
        record.update(
            returncode=result.returncode,
            outcome=result.outcome,
            duration=round(result.duration, 6),
            backend=result.backend,
            enforced=list(result.enforced),
            missing=list(result.missing),
            truncated=result.output_truncated,
        )
    else:
        record.update(returncode=None, outcome="refused", duration=0.0, enforced=[], missing=[], truncated=False)
    if error is not None:
        record["error"] = {"type": type(error).__name__, "message": str(error)}
    return record


class AuditLog:
    """An append-only JSON-lines file, opened before the run so an unwritable log refuses
    the run rather than losing its record. Safe to share between threads and processes."""

    def __init__(self, path: str) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            self._fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise PolicyError(f"audit log {path}: {exc.strerror}") from None
        self._lock = threading.Lock()

    def append(self, obj: Mapping[str, Any]) -> None:
        """Append `obj` as one line: a single write() with O_APPEND puts it after every
        other writer's line; flock keeps a longer line whole even if write() came back short."""
        line = (json.dumps(obj, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            big = len(line) > PIPE_BUF
            if big:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view) :]
            finally:
                if big:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_audit_record(
    path: str, plan: Mapping[str, Any] | None, result: RunResult | None = None, *, error: BaseException | None = None
) -> dict[str, Any]:
    """Append the audit line for one run (or refusal) to `path` and return it.

    `plan` is `plan_record(...)` or `describe(...)` of the run, taken before it.
    """
    record = audit_record(plan, result, error=error)
    with AuditLog(path) as log:
        log.append(record)
    return record
