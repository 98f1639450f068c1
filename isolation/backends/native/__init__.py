"""The native backend: our own C extension (`isolation._native`, from native/).

Python resolves the plan into a flat description; C does the clone-to-execve
choreography. The degradation ladder is decided here, before anything runs: a
layer the host cannot provide is either a refusal (strict) or an entry in
`missing` (best effort), never a silent omission.

One concern per module:

- `host`: what the kernel offers (and what a test may take away);
- `layout`: what a plan's sandbox looks like on this host, and its claims;
- `spec`: the C description of it (`Shape` without the command, `Spec` with);
- `spawn`: the one call into C that builds a sandbox, and starting its command;
- `message`: the command as a waiting isolation-init receives it, and the
  (step, path, errno) setup report;
- `prepared`: sandboxes built ahead of demand (the fast path; optional);
- `child`: the handle of a running sandbox and the reaper of its init.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from isolation._native import lib
from isolation.backends.base import Availability, Enforcement, Launched, Stdio
from isolation.backends.native import host as _host
from isolation.backends.native import layout, prepared, spawn
from isolation.backends.native.child import REAPER, NativeChild
from isolation.backends.native.host import HostFeatures, SimulatedHost, host_features, simulate_host
from isolation.backends.native.spawn import INIT_PROGRAM
from isolation.backends.native.spec import Spec, spec_of
from isolation.cgroups import PidsCgroup
from isolation.errors import IsolationUnavailable, SandboxSetupError
from isolation.plan import SandboxPlan
from isolation.rlimits import sandbox_enforced_limits

__all__ = [
    "INIT_PROGRAM",
    "HostFeatures",
    "NativeBackend",
    "NativeChild",
    "SimulatedHost",
    "host_features",
    "settle",
    "simulate_host",
]


def settle() -> None:
    """Let prepared sandboxes go and wait until every init has been reaped:
    afterwards the caller holds no process or descriptor of this backend."""
    prepared.release()
    REAPER.drain()


class NativeBackend:
    name = "native"

    @property
    def enforced_limits(self) -> frozenset[str]:
        """Limits this backend enforces: rlimits set between clone and exec, a root
        caller's max_pids with a cgroup (see `sandbox_enforced_limits`)."""
        return sandbox_enforced_limits()

    def availability(self) -> Availability:
        """Available when this host has every layer and a minimal real sandbox runs (see canary)."""
        from isolation.backends import canary

        if not os.access(INIT_PROGRAM, os.X_OK):
            return Availability(False, f"{INIT_PROGRAM} is missing or not executable; reinstall with `pip install .`")
        host = host_features()
        missing = host.missing(network=False)[1]
        if missing:
            return Availability(False, f"this host lacks {', '.join(missing)}: {host.why(missing)}")
        return canary.check(self.name, _launch_on_demand, f"user namespaces, Landlock ABI {host.landlock_abi}, seccomp")

    def verify(self, enforcement: Enforcement) -> None:
        """Raise what a run with `enforcement` would raise while setting up on this host
        (a minimal real sandbox, once per process; see canary)."""
        from isolation.backends import canary

        name = self.name if enforcement == "strict" else f"{self.name}/{enforcement}"
        canary.require(name, functools.partial(_launch_on_demand, enforcement=enforcement))

    def describe(self, plan: SandboxPlan, enforcement: Enforcement) -> dict[str, Any]:
        """What a run of `plan` gets here, from the spec the run itself uses: the rung
        (``namespaces``, or ``host`` for best effort without user namespaces), what it
        enforces and lacks, its mounts and its Landlock rules. Raises the refusal a run would."""
        spec = _make_spec(plan, enforcement)
        lay = spec.layout
        try:
            rs = lay.ruleset
            described: dict[str, Any] = {
                "rung": "namespaces" if lay.flags & lib.ISO_F_USERNS else "host",
                "enforced": list(spec.enforced),
                "missing": list(spec.missing),
                "landlock": None if rs is None else {"abi": rs.abi, "claim": rs.claim(), "rules": rs.describe()},
            }
            if lay.private_dir is not None:  # no mount namespace: the host's tree, Landlock's rules above
                described["mounts"] = []
            return described
        finally:
            lay.cleanup()  # a host layout's private directories are made per run

    def launch(self, plan: SandboxPlan, stdio: Stdio, *, enforcement: Enforcement = "strict") -> Launched:
        return self.launcher(plan, enforcement)(stdio)

    def launcher(self, plan: SandboxPlan, enforcement: Enforcement) -> Callable[[Stdio], Launched]:
        """Start `plan` with a run's stdio. Its `Spec` (the C description) is made here, once,
        and kept by the caller (the runner's resolution); a host layout's private
        directories are per run, so its spec is made by each run. Raises the refusal a
        run would, now."""
        if plan.policy.egress_allow:  # a plan of one run (its own proxy hand-over): nothing prepared ahead
            return functools.partial(_launch_on_demand, plan, enforcement=enforcement)
        spec = _make_spec(plan, enforcement)
        if spec.layout.private_dir is not None:
            spec.layout.cleanup()
            return functools.partial(_launch_once, plan, enforcement)
        return functools.partial(_launch, spec)


def _launch(spec: Spec, stdio: Stdio) -> Launched:
    try:
        return _start(spec, stdio)
    except SandboxSetupError as exc:
        if exc.step != "execve":
            _forget_host()
        raise


def _launch_once(
    plan: SandboxPlan, enforcement: Enforcement, stdio: Stdio, *, on_demand_only: bool = False
) -> Launched:
    """A run with a spec of its own, made now: a host layout (private directories per run),
    or with `on_demand_only` a run built without the pool (see `_launch_on_demand`)."""
    spec = _make_spec(plan, enforcement)
    try:
        return _start(spec, stdio, on_demand_only=True) if on_demand_only else _launch(spec, stdio)
    except BaseException:
        spec.layout.cleanup()
        raise


def _start(spec: Spec, stdio: Stdio, *, on_demand_only: bool = False) -> Launched:
    """Start `spec`'s command: in a prepared sandbox when one is ready, else in one built now."""
    cfg = spec.config_for(stdio)
    enforced = spec.enforced
    cgroup: PidsCgroup | None = None
    ended = prepared.POOL.run_started()  # the pool builds nothing while this run starts and runs
    try:
        if spec.pids_parent is not None and spec.max_pids is not None:
            cgroup, cfg.cgroup_procs_fd = _pids_cgroup(spec, int(cfg.flags))
            enforced = (*enforced, f"limit:max_pids={spec.max_pids}:cgroup-v1")
        started = (not on_demand_only and prepared.try_start(spec, cfg)) or spawn.start(spec, cfg)
    except BaseException:
        ended()
        if cgroup is not None:
            cgroup.remove()
        raise
    finally:
        if cfg.cgroup_procs_fd >= 0:
            os.close(cfg.cgroup_procs_fd)
    group = not (cfg.flags & lib.ISO_F_PIDNS)  # no pid namespace: the command leads its own process group
    child = NativeChild(
        started.pid, started.status_fd, group=group, cleanup=spec.layout, cgroup=cgroup, on_end=ended
    )
    return Launched(child, enforced, spec.missing)


def _pids_cgroup(spec: Spec, flags: int) -> tuple[PidsCgroup, int]:
    """A fresh pids cgroup (init counts too) and its cgroup.procs opened for the sandbox to join."""
    assert spec.pids_parent is not None and spec.max_pids is not None
    cgroup = PidsCgroup.create_for_sandbox(spec.pids_parent, spec.max_pids + (1 if flags & lib.ISO_F_PIDNS else 0))
    try:
        return cgroup, os.open(os.path.join(cgroup.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        cgroup.remove()
        raise SandboxSetupError.from_oserror(
            exc, f"cannot open {cgroup.path}/cgroup.procs", step="cgroup", path=cgroup.path
        ) from None


def _launch_on_demand(plan: SandboxPlan, stdio: Stdio, enforcement: Enforcement = "strict") -> Launched:
    """A run built on demand, as `launch` builds one when no prepared sandbox is ready;
    without the pool, so checking the host (see canary) leaves nothing behind."""
    return _launch_once(plan, enforcement, stdio, on_demand_only=True)


def _forget_host() -> None:
    """A sandbox failed to set up: what was concluded about this host is checked again."""
    from isolation import userns

    userns.forget()
    _forget_choices()


def _forget_choices() -> None:
    from isolation import resolution  # imported late: it imports the backends
    from isolation.backends import canary

    canary.forget("native")
    resolution.forget()


_host.on_change(_forget_choices)


def _make_spec(plan: SandboxPlan, enforcement: Enforcement) -> Spec:
    host = host_features()
    missing, required = host.missing(network=plan.network)
    if plan.seccomp is None:
        required = [r for r in required if r != "seccomp"]
        missing = [m for m in missing if m != "seccomp"]
    if required and enforcement == "strict":
        # bwrap needs user namespaces and seccomp too: advised only when Landlock alone is lacking.
        bwrap = "backend='bwrap', or " if all(r.startswith("landlock:") for r in required) else ""
        raise IsolationUnavailable(
            f"the native backend cannot enforce {', '.join(required)} on this host: {host.why(required)}; "
            f"fix that, or use {bwrap}enforcement='best_effort' (CLI --best-effort) to run without them"
        )
    if plan.policy.egress_allow and not host.userns:
        raise IsolationUnavailable(
            "an egress allowlist needs the sandbox's own network namespace, and this host has no user "
            f"namespaces ({host.why(['namespace:user'])}); enable them, or use the host network (bare Network)"
        )
    lay = layout.namespaced(plan, host) if host.userns else layout.on_host(plan, host)
    try:
        missing = [m for m in missing if m not in lay.enforced]  # the host layout has ids of its own
        if not host.userns and (plan.seccomp is None or not host.seccomp):
            missing += layout.HOST_LAYOUT_SECCOMP if plan.network else [*layout.HOST_LAYOUT_SECCOMP, "network:non-tcp"]
        return spec_of(plan, host, lay, (*missing, *lay.missing))
    except BaseException:
        lay.cleanup()
        raise
