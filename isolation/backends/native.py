"""The native backend: our own C extension (`isolation._native`, from native/).

Python resolves the plan into a flat description (mounts, Landlock rules,
the seccomp program, rlimits); C does the clone-to-execve choreography. The
degradation ladder is decided here, before anything runs: a layer the host
cannot provide is either a refusal (strict) or an entry in `missing`
(best effort), never a silent omission.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from isolation import landlock
from isolation._native import ffi, lib
from isolation.backends import nspool, prepared
from isolation.backends.base import Availability, Enforcement, Launched, Stdio
from isolation.cgroups import PidsCgroup
from isolation.errors import IsolationUnavailable, PolicyError, SandboxSetupError
from isolation.plan import WORK_DIR, Mount, SandboxPlan, tmpfs_bound
from isolation.result import Usage
from isolation.rlimits import sandbox_enforced_limits, sandbox_limits
from isolation.seccomp import SeccompFilter, compile_profile
from isolation.userns import landlock_status, seccomp_status, userns_status

# pid 1 of every sandbox with a pid namespace (native/init.c, built by setup.py).
INIT_PROGRAM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_isolation_init")

_KIND = {
    "ro-bind": lib.ISO_MOUNT_RO_BIND,
    "rw-bind": lib.ISO_MOUNT_RW_BIND,
    "tmpfs": lib.ISO_MOUNT_TMPFS,
    "proc": lib.ISO_MOUNT_PROC,
    "proc-ro": lib.ISO_MOUNT_PROC_RO,
    "dev": lib.ISO_MOUNT_DEV,
    "device": lib.ISO_MOUNT_DEVICE,
    "symlink": lib.ISO_MOUNT_SYMLINK,
    "file": lib.ISO_MOUNT_FILE,
    "mask": lib.ISO_MOUNT_MASK,
}

_NAMESPACES = (
    ("user", lib.ISO_F_USERNS),
    ("mount", lib.ISO_F_MOUNTNS),
    ("pid", lib.ISO_F_PIDNS),
    ("net", lib.ISO_F_NETNS),
    ("ipc", lib.ISO_F_IPCNS),
    ("uts", lib.ISO_F_UTSNS),
    ("cgroup", lib.ISO_F_CGROUPNS),
)


@attrs.frozen
class SimulatedHost:
    """What a test makes this process believe the host lacks (see `simulate_host`).

    It only ever takes layers away, and `RunResult.missing` says so: a run on a
    simulated host is what the same run on a real host lacking them would be.
    `landlock_unlisted` leaves the Landlock rules of those sandbox paths out
    (mounted but not allowed), to show that Landlock, not the mount table, denies them.
    """

    userns: bool = True
    landlock: bool = True
    landlock_abi: int | None = None  # cap on the kernel's ABI
    seccomp: bool = True
    landlock_unlisted: frozenset[str] = frozenset()


_simulated: SimulatedHost | None = None


@contextlib.contextmanager
def simulate_host(host: SimulatedHost) -> Iterator[None]:
    """Within the block, this process's runs see `host` (tests only).

    The one way to walk the degradation ladder on a kernel that has every layer:
    a call in the process itself, never an environment variable or a file, so
    nothing a production environment sets can switch a layer off. Choices made
    from the host's features (`auto`'s backend, the native templates) are
    forgotten on the way in and out. Not thread-safe: for tests.
    """
    global _simulated
    before = _simulated
    _simulated = host
    _forget_choices()
    try:
        yield
    finally:
        _simulated = before
        _forget_choices()


def _forget_choices() -> None:
    from isolation import runner  # imported late: the runner imports the backends
    from isolation.backends import canary

    canary.forget("native")
    runner._recipes.clear()
    _templates.clear()


@attrs.frozen
class HostFeatures:
    userns: bool
    userns_why: str
    landlock_abi: int
    seccomp: bool
    landlock_why: str = ""  # the cause and fix when Landlock is unusable
    seccomp_why: str = ""  # the same for seccomp

    def why(self, features: list[str]) -> str:
        """The causes (and fixes) of the host's gaps among `features` (names as in `missing`)."""
        reasons = [self.userns_why] if not self.userns and any(f.startswith("namespace:") for f in features) else []
        if any(f.startswith("landlock:") for f in features) and self.landlock_why:
            reasons.append(self.landlock_why)
        if "seccomp" in features and self.seccomp_why:
            reasons.append(self.seccomp_why)
        return "; ".join(reasons)


def host_features() -> HostFeatures:
    sim = _simulated or SimulatedHost()
    ok, why = userns_status()
    if not sim.userns:
        ok, why = False, _SIMULATED
    kernel_abi, landlock_why = _landlock_status()
    abi = kernel_abi if sim.landlock else 0
    if sim.landlock_abi is not None:
        abi = min(abi, sim.landlock_abi)
    abi = min(abi, landlock.NEWEST_ABI)
    seccomp_ok, seccomp_why = _seccomp_status()
    if abi == 0 < kernel_abi:
        landlock_why = _SIMULATED
    if seccomp_ok and not sim.seccomp:
        seccomp_why = _SIMULATED
    return HostFeatures(ok, why, abi, seccomp_ok and sim.seccomp, landlock_why, seccomp_why)


_SIMULATED = "simulated by a test (isolation.backends.native.simulate_host)"
# Kernel facts that do not change while the process lives.
_landlock_status = functools.cache(landlock_status)
_seccomp_status = functools.cache(seccomp_status)


@functools.cache
def _cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def _pids_cgroup(parent: str, max_tasks: int) -> tuple[PidsCgroup, int]:
    """A fresh pids cgroup and its cgroup.procs opened for the sandbox to join."""
    cgroup = PidsCgroup.create_for_sandbox(parent, max_tasks)
    try:
        return cgroup, os.open(os.path.join(cgroup.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        cgroup.remove()
        raise SandboxSetupError(
            f"cannot open {cgroup.path}/cgroup.procs: {exc.strerror}", step="cgroup", path=cgroup.path,
            errno=exc.errno or 0,
        ) from None


class _Reaper:
    """Reaps sandboxes' inits after they have reported: the command and every
    process of the sandbox are gone by then, and what is left of the exit
    (the kernel tearing down the namespaces, ~0.5 ms) need not hold up the caller."""

    def __init__(self) -> None:
        self._queue: queue.Queue[int] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def adopt(self, pid: int) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="isolation-reaper", daemon=True)
                self._thread.start()
        self._queue.put(pid)

    def _run(self) -> None:
        while True:
            pid = self._queue.get()
            try:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Return once every adopted init has been reaped."""
        self._queue.join()

    def _after_fork_in_child(self) -> None:
        self._queue = queue.Queue()  # the parent's inits are not this process's children
        self._thread = None
        self._lock = threading.Lock()


REAPER = _Reaper()
os.register_at_fork(after_in_child=REAPER._after_fork_in_child)
REPORT = struct.Struct("=IIQQQ")  # struct iso_report: status, reserved, utime and stime in µs, maxrss in KiB


def settle() -> None:
    """Let prepared sandboxes and namespaces go and wait until every init has been
    reaped: afterwards the caller holds no process or descriptor of this backend."""
    prepared.release()
    nspool.release()
    REAPER.drain()


class NativeChild:
    """The sandbox's init (pid 1 inside); its report pipe carries the command's wait status.

    Two steps end it. Reaping (`_reap`, under `_lock`) is quick: read the report or
    wait4 init. Settling (`_settle`, under no lock) is what follows and may be slow:
    a pids cgroup's removal is retried while the kernel still detaches the dead
    tasks. `poll()` never blocks on either: a CLI's SIGINT handler may call it while
    the main thread it interrupted is in the middle of both.
    """

    def __init__(
        self,
        pid: int,
        status_fd: int,
        *,
        group: bool = False,
        cleanup: _Layout | None = None,
        cgroup: PidsCgroup | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._pid = pid
        self._on_end = on_end
        self._to_reap = -1  # init, once it has reported: the reaper's, at release()
        self._deferred = False  # release() waits for the caller (see defer_release)
        self._release_lock = threading.Lock()
        self._cgroup = cgroup
        self._refused_forks = 0
        self._status_fd = status_fd
        self._group = group  # no pid namespace: the command leads its own process group
        self._cleanup = cleanup
        self._usage: Usage | None = None
        self._lock = threading.Lock()
        self._unsettled = False  # reaped, and nobody has claimed what follows yet
        self._settled = threading.Event()  # what follows the end is done
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)
        # With a pid namespace, init reports once the sandbox is empty and is reaped in the
        # background; with a cgroup to remove, its exit is waited for (it is still in it).
        self._early = not group and cgroup is None and status_fd >= 0
        if status_fd >= 0:
            os.set_blocking(status_fd, False)

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def exit_fd(self) -> int:
        """Readable once the sandbox's end is known (poll() then returns it)."""
        return self._status_fd if self._early and self._status_fd >= 0 else self._pidfd

    def _read_report(self) -> bytes | None:
        """The report, b"" if init ended without one, None if not there yet."""
        try:
            return os.read(self._status_fd, REPORT.size)
        except BlockingIOError:
            return None

    def _record(self, status: int, reaped: bool) -> None:
        """Under _lock: the end is known; close its descriptors, leave the rest to _settle."""
        self.returncode = os.waitstatus_to_exitcode(status)
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1
        os.close(self._pidfd)
        self._pidfd = -1
        if not reaped:
            self._to_reap = self._pid
        self._unsettled = True

    def _settle(self) -> None:
        """What follows the end, by whichever caller claims it first; never under _lock."""
        with self._lock:
            mine, self._unsettled = self._unsettled, False
        if not mine:
            return
        try:
            if self._group:  # what the command left in its process group goes with it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._pid, signal.SIGKILL)
            if self._cleanup is not None:
                self._cleanup.cleanup()
            cgroup, self._cgroup = self._cgroup, None
            if cgroup is not None:  # init has exited: the kernel has killed the rest
                self._refused_forks = cgroup.refused_forks()
                cgroup.remove()
        finally:
            self._settled.set()
        if not self._deferred:
            self.release()

    def defer_release(self) -> None:
        """Hold what follows the end (handing init to the reaper, telling the pool of
        prepared sandboxes the run is over) until release(): both wake a thread, which
        would compete with a caller still collecting the result."""
        self._deferred = True

    def release(self) -> None:
        """Run what follows the end, once it has come; idempotent."""
        if self.returncode is None:
            return
        self._settle()
        self._settled.wait()
        with self._release_lock:
            pid, self._to_reap = self._to_reap, -1
            on_end, self._on_end = self._on_end, None
        if pid > 0:
            REAPER.adopt(pid)
        if on_end is not None:
            on_end()

    def limits_hit(self) -> tuple[str, ...]:
        """Limits the sandbox ran into that only the backend can see (once it has ended)."""
        if self.returncode is None:
            return ()
        self._settled.wait()
        return ("max_pids",) if self._refused_forks else ()

    def _reap(self, *, block: bool = True) -> int | None:
        # One reaper at a time: the runner's output thread and a caller's wait() may race.
        # Without `block`, a busy lock means "not known yet" (another thread, or the code
        # this signal handler interrupted, is reaping), as Popen.poll does.
        if not self._lock.acquire(blocking=block):
            return None
        try:
            if self.returncode is None and not self._ended():
                return None
            rc = self.returncode
        finally:
            self._lock.release()
        self._settle()
        return rc

    def _ended(self) -> bool:
        """Under _lock: whether the sandbox has ended (then recorded)."""
        if self._early:
            report = self._read_report()
            if report is None:
                return False
            if len(report) == REPORT.size:  # the sandbox is empty; init's exit is left to the reaper
                status = self._take_report(report)
                self._record(status, reaped=os.wait4(self._pid, os.WNOHANG)[0] == self._pid)
                return True
            self._early = False  # init ended without a report (killed): wait for its exit
        pid, status, ru = os.wait4(self._pid, os.WNOHANG)
        if pid != self._pid:
            return False
        report = self._read_report() if self._status_fd >= 0 else None
        if report is not None and len(report) == REPORT.size:
            status = self._take_report(report)
        else:  # no report: the rusage of our child (the command, or an init killed early)
            self._usage = Usage(cpu_time=ru.ru_utime + ru.ru_stime, peak_rss=ru.ru_maxrss * 1024)
        self._record(status, reaped=True)
        return True

    def _take_report(self, report: bytes) -> int:
        status, _, utime, stime, maxrss = REPORT.unpack(report)
        self._usage = Usage(cpu_time=(utime + stime) / 1e6, peak_rss=maxrss * 1024)
        return int(status)

    def poll(self) -> int | None:
        """The exit status, or None while it runs or while another caller is reaping it; never blocks."""
        return self._reap(block=False)

    def usage(self) -> Usage | None:
        """CPU time and peak RSS of every process of the sandbox, as isolation-init
        reported them (it reaps them all); None when init was killed before reporting."""
        return self._usage

    def wait(self, timeout: float | None = None) -> int:
        # Block on the report or the pidfd, never inside the lock: kill() from another thread must get through.
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        while (rc := self._reap()) is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise subprocess.TimeoutExpired("sandbox", timeout or 0.0)
            with self._lock:
                fd = os.dup(self.exit_fd) if self.returncode is None else -1
            if fd < 0:
                continue  # ended meanwhile
            try:
                p = select.poll()  # not select(): descriptors above 1023 are common under load
                p.register(fd, select.POLLIN)
                p.poll(None if remaining is None else remaining * 1000)
            finally:
                os.close(fd)
        self._settled.wait()  # another caller may still be settling it
        return rc

    def send_signal(self, sig: int) -> None:
        with self._lock:  # the pidfd is closed under the lock once init is reaped
            if self.returncode is None and self._pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        """SIGKILL to init ends the pid namespace: the kernel kills every process in it."""
        if self.returncode is not None or self._pidfd < 0:
            return
        if self._group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
        self.send_signal(signal.SIGKILL)

    def __del__(self) -> None:
        if self.returncode is None and getattr(self, "_pidfd", -1) >= 0:
            self.kill()
            with contextlib.suppress(ChildProcessError):
                self.wait()
        if getattr(self, "_release_lock", None) is not None:
            self.release()


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
        missing = self._missing(host, network=False)[1]
        if missing:
            return Availability(False, f"this host lacks {', '.join(missing)}: {host.why(missing)}")
        return canary.check(self.name, _launch_unpooled, f"user namespaces, Landlock ABI {host.landlock_abi}, seccomp")

    def verify(self, enforcement: Enforcement) -> None:
        """Raise what a run with `enforcement` would raise while setting up on this host
        (a minimal real sandbox, once per process; see canary)."""
        from isolation.backends import canary

        name = self.name if enforcement == "strict" else f"{self.name}/{enforcement}"
        canary.require(name, functools.partial(_launch_unpooled, enforcement=enforcement))

    def describe(self, plan: SandboxPlan, enforcement: Enforcement) -> dict[str, Any]:
        """What a run of `plan` gets here, from the template the run itself uses: the rung
        (``namespaces``, or ``host`` for best effort without user namespaces), what it
        enforces and lacks, its mounts and its Landlock rules. Raises the refusal a run would."""
        tpl = _template(plan, enforcement)
        try:
            layout = tpl.layout
            rs = layout.ruleset
            described: dict[str, Any] = {
                "rung": "namespaces" if layout.flags & lib.ISO_F_USERNS else "host",
                "enforced": list(tpl.enforced),
                "missing": list(tpl.missing),
                "landlock": None if rs is None else {"abi": rs.abi, "claim": rs.claim(), "rules": rs.describe()},
            }
            if layout.scratch_dir is not None:  # no mount namespace: the host's tree, Landlock's rules above
                described["mounts"] = []
            return described
        finally:
            if layout.scratch_dir is not None:  # a host layout's private directories: made per run
                layout.cleanup()

    @staticmethod
    def _missing(host: HostFeatures, *, network: bool) -> tuple[list[str], list[str]]:
        missing: list[str] = []
        required: list[str] = []
        if not host.userns:
            ns = [f"namespace:{n}" for n, _ in _NAMESPACES if n != "net" or not network]
            missing += [*ns, "rootfs:minimal", "ids:65534"]
            required += missing
        ll_missing, ll_required = landlock.missing_features(host.landlock_abi, network=network)
        missing += ll_missing
        required += ll_required
        if not host.seccomp:
            missing.append("seccomp")
            required.append("seccomp")
        return missing, required

    def launch(self, plan: SandboxPlan, stdio: Stdio, *, enforcement: Enforcement = "strict") -> Launched:
        if plan.policy.egress_allow:  # a plan of one run (its own proxy hand-over): nothing prepared ahead
            return _launch_unpooled(plan, stdio, enforcement)
        tpl = _template(plan, enforcement)
        try:
            return _start(tpl, stdio)
        except SandboxSetupError as exc:
            tpl.layout.cleanup()
            if exc.step != "execve":
                _forget_host()
            raise
        except BaseException:
            tpl.layout.cleanup()
            raise


def _launch_unpooled(plan: SandboxPlan, stdio: Stdio, enforcement: Enforcement = "strict") -> Launched:
    """A run built on demand, as `launch` builds one when no prepared sandbox is ready;
    without the pools, so checking the host (see canary) leaves nothing behind."""
    tpl = _template(plan, enforcement)
    try:
        return _start(attrs.evolve(tpl, blueprint=None, build=None, ns_key=None), stdio)
    except BaseException:
        tpl.layout.cleanup()
        raise


def _forget_host() -> None:
    """A sandbox failed to set up: what was concluded about this host is checked again."""
    from isolation import runner, userns  # late: the runner imports the backends
    from isolation.backends import canary

    canary.forget("native")
    userns.forget()
    runner._recipes.clear()
    _templates.clear()


@attrs.frozen(eq=False)
class _Template:
    """Everything a sandbox for one plan needs but its descriptors: cached per plan,
    so a run of a prepared sandbox only adds its stdio and sends the command."""

    layout: _Layout
    cfg: Any  # struct iso_config *: all but the descriptors and the scratch array; copied per run
    keep: tuple[Any, ...]  # cffi buffers cfg points into
    enforced: tuple[str, ...]
    missing: tuple[str, ...]
    max_pids: int | None
    pids_parent: str | None
    blueprint: tuple[object, ...] | None  # the prepared pool's key; None: built on demand only
    build: Callable[[], prepared.PreparedSandbox | None] | None
    ns_key: nspool.Key | None  # prepared namespaces to join; None: the sandbox creates its own


# Per (plan, enforcement, simulated host, caller's ids). A plan is immutable and the host's
# features are probed once per process; a host layout (no user namespace) is per run.
_templates: dict[tuple[object, ...], _Template] = {}
_TEMPLATES_MAX = 64


def _template(plan: SandboxPlan, enforcement: Enforcement) -> _Template:
    key = (plan, enforcement, _simulated, os.geteuid(), os.getegid())
    tpl = _templates.get(key)
    if tpl is None:
        tpl = _make_template(plan, enforcement)
        if tpl.layout.scratch_dir is None:
            if len(_templates) >= _TEMPLATES_MAX:
                _templates.clear()
            _templates[key] = tpl
    return tpl


def _make_template(plan: SandboxPlan, enforcement: Enforcement) -> _Template:
    host = host_features()
    missing, required = NativeBackend._missing(host, network=plan.network)
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
    layout = _namespaced_layout(plan, host) if host.userns else _host_layout(plan, host)
    try:
        missing = [m for m in missing if m not in layout.enforced]  # the host layout has ids of its own
        if not host.userns and (plan.seccomp is None or not host.seccomp):
            missing += _HOST_LAYOUT_SECCOMP if plan.network else [*_HOST_LAYOUT_SECCOMP, "network:non-tcp"]
        return _describe_run(plan, host, layout, (*missing, *layout.missing))
    except BaseException:
        layout.cleanup()
        raise


def _describe_run(plan: SandboxPlan, host: HostFeatures, layout: _Layout, missing: tuple[str, ...]) -> _Template:
    keep: list[Any] = []  # cffi buffers that must outlive the runs

    def cstr(s: str | bytes) -> Any:
        buf = ffi.new("char[]", s.encode() if isinstance(s, str) else s)
        keep.append(buf)
        return buf

    def cstrs(items: list[str]) -> Any:
        arr = ffi.new("char *[]", [cstr(x) for x in items] + [ffi.NULL])
        keep.append(arr)
        return arr

    cfg = ffi.new("struct iso_config *")
    enforced = list(layout.enforced)
    seccomp = plan.seccomp if plan.seccomp is not None and host.seccomp else None
    if seccomp is not None and not host.userns:  # the host layout's own rules (see seccomp_profile)
        seccomp = compile_profile(seccomp.profile, host_layout=True, network=plan.network)
    static = _static_config(layout.mounts, layout.ruleset, seccomp, plan.hostname)
    keep.append(static)
    flags = _describe_sandbox(cfg, layout, static, plan.uid, plan.gid)
    cfg.argv = cstrs(list(plan.argv))
    cfg.envp = cstrs([f"{k}={v}" for k, v in layout.env])
    cfg.exe = cstr(layout.exe)
    cfg.cwd = cstr(layout.cwd)
    if layout.ruleset is not None:
        enforced.append(layout.ruleset.claim())
        if layout.ruleset.net and layout.ruleset.net_port:
            enforced.append(f"landlock:net:connect={layout.ruleset.net_port}")
    if seccomp is not None:
        flags |= lib.ISO_F_SECCOMP
        cfg.bpf = static.bpf
        cfg.bpf_len = len(seccomp.bpf) // 8
        enforced.append(f"seccomp:{seccomp.profile}:sha256={seccomp.digest}")

    mechanisms = sandbox_limits(plan.policy.limits)
    settings = mechanisms.rlimits
    rl = ffi.new("struct iso_rlimit[]", max(len(settings), 1))
    keep.append(rl)
    for i, st in enumerate(settings):
        # The sandbox's own init counts against RLIMIT_NPROC too: allow for it.
        extra = 1 if st.name == "max_pids" and flags & lib.ISO_F_PIDNS else 0
        rl[i].resource, rl[i].soft, rl[i].hard = st.resource, st.soft + extra, st.hard + extra
        enforced.append(st.claim)
    cfg.rlimits = rl
    cfg.n_rlimits = len(settings)
    cfg.flags = flags

    blueprint: tuple[object, ...] | None = None
    build = None
    if flags & lib.ISO_F_PIDNS and flags & lib.ISO_F_MOUNTNS:
        # Sandboxes built ahead of demand are shared by every plan with the same sandbox (see prepared.py).
        blueprint = (flags & ~lib.ISO_F_SECCOMP, static, plan.uid, plan.gid, cfg.uid_outside, cfg.gid_outside)
        build = functools.partial(_build_prepared, layout, static, plan.uid, plan.gid, flags)
    ns_key = None
    if flags & lib.ISO_F_USERNS and flags & lib.ISO_F_NETNS:
        ns_key = (plan.uid, plan.gid, cfg.uid_outside, cfg.gid_outside, flags & nspool.FLAGS)
    return _Template(
        layout,
        cfg,
        tuple(keep),
        tuple(enforced),
        missing,
        plan.policy.limits.max_pids,
        mechanisms.pids_cgroup_parent,
        blueprint,
        build,
        ns_key,
    )


def _start(tpl: _Template, stdio: Stdio) -> Launched:
    cfg = ffi.new("struct iso_config *", tpl.cfg[0])  # a copy: runs of one template may overlap
    cfg.stdio = [stdio.stdin, stdio.stdout, stdio.stderr]
    flags = int(cfg.flags)
    enforced = tpl.enforced

    # A sandbox built ahead of demand for this policy (see prepared.py), if one is ready.
    ready: prepared.PreparedSandbox | None = None
    ticket: object = None
    if tpl.blueprint is not None and tpl.build is not None:
        ready, ticket = prepared.POOL.take(tpl.blueprint, tpl.build)
        if ready is not None and not ready.fresh():
            ready.discard()
            ready = None

    out = ffi.new("struct iso_started *")
    init_fd = -1
    cgroup: PidsCgroup | None = None
    procs_fd = -1
    ns_fds: nspool.Fds = (-1, -1, -1)
    try:
        if tpl.pids_parent is not None and tpl.max_pids is not None:
            cgroup, procs_fd = _pids_cgroup(tpl.pids_parent, tpl.max_pids + (1 if flags & lib.ISO_F_PIDNS else 0))
            enforced = (*enforced, f"limit:max_pids={tpl.max_pids}:cgroup-v1")
        cfg.cgroup_procs_fd = procs_fd
        if ready is not None:
            rc = lib.iso_run_prepared(ready.control_fd, cfg, out)
            out.pid = ready.pid
            if rc != 0 and ffi.string(out.error.step) == b"send command":
                # It was gone before it got the command (killed from outside): build one now.
                ready.discard()
                ready = None
                out = ffi.new("struct iso_started *")
        if ready is None:
            if flags & lib.ISO_F_PIDNS:
                init_fd = cfg.init_fd = _open_init()
            if tpl.ns_key is not None:
                # Fresh namespaces made ahead of demand (see nspool); used by this sandbox only.
                ns_fds = nspool.POOL.take(tpl.ns_key) or ns_fds
                cfg.ns_fds = list(ns_fds)
            rc = _spawn(cfg, out)
    except BaseException:
        if cgroup is not None:
            cgroup.remove()
        if ready is not None:
            ready.discard()
        if ticket is not None:
            prepared.POOL.done(ticket)
        raise
    finally:
        for fd in (init_fd, procs_fd, *ns_fds):
            if fd >= 0:
                os.close(fd)
    if ready is not None:
        if rc == 0:
            ready.close_control()
        else:  # it received its command, or died: it is used up either way
            ready.discard()
    if rc != 0 and cgroup is not None:
        cgroup.remove()
    if rc != 0 and ticket is not None:
        prepared.POOL.done(ticket)
    if rc != 0:
        step = ffi.string(out.error.step).decode(errors="replace")
        path = ffi.string(out.error.path).decode(errors="replace")
        err = int(out.error.err)
        where = f" {path}" if path else ""
        raise SandboxSetupError(
            f"native sandbox setup failed at {step}{where}: {os.strerror(err)} (errno {err})",
            step=step,
            path=path,
            errno=err,
        )
    child = NativeChild(
        int(out.pid),
        int(out.status_fd),
        group=not (flags & lib.ISO_F_PIDNS),
        cleanup=tpl.layout,
        cgroup=cgroup,
        on_end=None if ticket is None else functools.partial(prepared.POOL.done, ticket),
    )
    return Launched(child, enforced, tpl.missing)


def _open_init() -> int:
    try:
        return os.open(INIT_PROGRAM, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise IsolationUnavailable(
            f"the native backend's init program {INIT_PROGRAM} is missing ({exc.strerror}); "
            "reinstall with `pip install .`"
        ) from None


def _spawn(cfg: Any, out: Any) -> int:
    """iso_spawn, with the array C writes into while it builds (one per build, alive until it returns)."""
    scratch = ffi.new("int[]", max(int(cfg.n_mounts), 1))
    cfg.scratch = scratch
    return int(lib.iso_spawn(cfg, out))


def _describe_sandbox(cfg: Any, layout: _Layout, static: _StaticConfig, uid: int, gid: int) -> int:
    """Fill in what builds the sandbox itself (everything but the command); return its flags."""
    flags = layout.flags
    cfg.uid_inside, cfg.gid_inside = uid, gid
    cfg.uid_outside, cfg.gid_outside = os.geteuid(), os.getegid()
    cfg.ns_fds = [-1, -1, -1]  # 0 would be a descriptor
    cfg.control_fd = -1
    cfg.cgroup_procs_fd = -1
    cfg.init_fd = -1
    cfg.hostname = static.hostname
    cfg.mounts = static.mounts
    cfg.n_mounts = len(layout.mounts)
    if layout.ruleset is not None:
        rs = layout.ruleset
        flags |= lib.ISO_F_LANDLOCK
        cfg.landlock_attr_size = rs.attr_size
        cfg.landlock_fs = rs.fs
        cfg.landlock_net = rs.net
        cfg.landlock_scoped = rs.scoped
        cfg.landlock_port = rs.net_port
        cfg.rules = static.rules
        cfg.n_rules = len(rs.rules)
    cfg.cap_last_cap = _cap_last_cap()
    return flags


def _build_prepared(
    layout: _Layout, static: _StaticConfig, uid: int, gid: int, flags: int
) -> prepared.PreparedSandbox | None:
    """Build a sandbox whose init waits for its command (run by the pool's thread)."""
    cfg = ffi.new("struct iso_config *")
    _describe_sandbox(cfg, layout, static, uid, gid)
    cfg.flags = (flags & ~lib.ISO_F_SECCOMP) | lib.ISO_F_PREPARED
    cfg.stdio = [-1, -1, -1]
    sources = []
    for m in layout.mounts:  # recorded first: a source replaced meanwhile fails the later check
        if m.kind in ("ro-bind", "rw-bind") and m.source is not None:
            try:
                st = os.stat(m.source)
            except OSError:
                return None
            sources.append((m.source, st.st_dev, st.st_ino))
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    control = mine.detach()
    out = ffi.new("struct iso_started *")
    try:
        cfg.init_fd = _open_init()
        cfg.control_fd = theirs.fileno()
        rc = _spawn(cfg, out)
    except BaseException:
        os.close(control)
        raise
    finally:
        theirs.close()
        if cfg.init_fd >= 0:
            os.close(cfg.init_fd)
    if rc != 0:
        os.close(control)
        return None
    os.close(out.status_fd)  # a prepared sandbox's status pipe comes with its command
    return prepared.PreparedSandbox(int(out.pid), control, tuple(sources))


@attrs.frozen(eq=False)  # one object per policy (cached): compared and hashed by identity
class _StaticConfig:
    """The C arrays a policy's sandboxes share: built once, only read by C."""

    hostname: Any
    mounts: Any
    rules: Any
    bpf: Any
    keep: tuple[Any, ...]


@functools.lru_cache(maxsize=32)
def _static_config(
    mounts: tuple[Mount, ...], ruleset: landlock.Ruleset | None, seccomp: SeccompFilter | None, hostname: str
) -> _StaticConfig:
    keep: list[Any] = []

    def cstr(s: str | bytes) -> Any:
        buf = ffi.new("char[]", s.encode() if isinstance(s, str) else s)
        keep.append(buf)
        return buf

    arr = ffi.new("struct iso_mount[]", max(len(mounts), 1))
    for i, m in enumerate(mounts):
        arr[i].kind = _KIND[m.kind]
        arr[i].target = cstr(m.target)
        if m.source is not None:  # bind sources are opened by the child, following symlinks as open(2) does
            arr[i].source = cstr(m.source)
        if m.data is not None:
            arr[i].data = cstr(m.data)
            arr[i].data_len = len(m.data)
        arr[i].size = m.size or 0  # C refuses a tmpfs without a bound
        arr[i].max_ptys = m.ptys or 0
    rules = ffi.NULL
    if ruleset is not None:
        rules = ffi.new("struct iso_rule[]", max(len(ruleset.rules), 1))
        for i, r in enumerate(ruleset.rules):
            rules[i].path = cstr(r.path)
            rules[i].access = r.access
    bpf = cstr(seccomp.bpf) if seccomp is not None else ffi.NULL
    return _StaticConfig(cstr(hostname), arr, rules, bpf, (arr, rules, *keep))


@attrs.frozen
class _Layout:
    """What C is asked to build: mounts, Landlock rules, and where the command starts."""

    flags: int
    mounts: tuple[Mount, ...]
    ruleset: landlock.Ruleset | None
    exe: str
    cwd: str
    env: tuple[tuple[str, str], ...]
    enforced: tuple[str, ...]
    missing: tuple[str, ...] = ()
    scratch_dir: str | None = None  # host directory to remove after the run

    def cleanup(self) -> None:
        if self.scratch_dir is not None:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)


def _executable(plan: SandboxPlan) -> tuple[str, str]:
    exe = plan.executable or plan.find_executable(plan.argv[0])
    if exe is None:  # build_plan checked already; the host may have changed since
        raise PolicyError(f"{plan.argv[0]} is not executable inside the sandbox")
    return exe


def _namespaced_layout(plan: SandboxPlan, host: HostFeatures) -> _Layout:
    flags = lib.ISO_F_CAPS
    enforced: list[str] = []
    for name, bit in _NAMESPACES:
        if name == "net" and plan.network:
            continue
        flags |= bit
        enforced.append(f"namespace:{name}")
    enforced += ["rootfs:minimal", "ids:65534", "capabilities:none", "no_new_privs", "new_session"]
    enforced += ["fds:closed", "env:cleared", "pid1:init"]
    enforced += _mount_bounds(plan.mounts)
    ruleset = None
    if host.landlock_abi >= 1:
        unlisted = _simulated.landlock_unlisted if _simulated is not None else frozenset()
        ruleset = landlock.ruleset_for(plan, host.landlock_abi, unlisted=unlisted)
    return _Layout(flags, plan.mounts, ruleset, _executable(plan)[0], plan.cwd, plan.env, tuple(enforced))


def _mount_bounds(mounts: tuple[Mount, ...]) -> list[str]:
    """Claims for the bounds setup_mounts gives the sandbox's own file systems:
    size= on every writable tmpfs, max= on its devpts instance (none at all for 0)."""
    claims: list[str] = []
    size = tmpfs_bound(mounts)
    if size is not None:
        claims.append(f"limit:tmpfs_size={size}:tmpfs")
    ptys = {m.ptys for m in mounts if m.kind == "dev"}
    if len(ptys) == 1 and None not in ptys:
        n = ptys.pop()
        claims.append(f"limit:max_ptys={n}:devpts" if n else "limit:max_ptys=0:no-devpts")
    return claims


# What the host layout's seccomp rules close, named in `missing` when it runs without them.
_HOST_LAYOUT_SECCOMP = ["files:metadata", "sockets:unix"]


def _host_layout(plan: SandboxPlan, host: HostFeatures) -> _Layout:
    """Best effort without user namespaces: the command sees the host's file
    tree, and Landlock alone decides what it may touch. Only identity binds
    can be honoured (nothing can appear at another path), /work and /tmp
    become private host directories, and TMPDIR points at the latter.

    What Landlock leaves open there is closed by other means or named in
    `missing`: a root caller's command runs as 65534 with no groups (root
    owns /proc/sys and the host's files, capabilities or not); /proc is
    read-only; the seccomp filter gains the host-layout rules (mode, owner,
    times and extended attributes by path, truncate by path, unix sockets but
    stream pairs, and without `Network` every IP socket but TCP). An unprivileged caller cannot drop
    the bounding set: `capabilities:bounding` is missing, and only the four
    sets it holds are claimed empty."""
    if host.landlock_abi < 1:
        raise IsolationUnavailable(
            "without user namespaces and without Landlock nothing would restrict the file system; refusing to run"
        )
    root = os.geteuid() == 0
    scratch = tempfile.mkdtemp(prefix="isolation-")
    os.chmod(scratch, 0o700)
    work, tmp = os.path.join(scratch, "work"), os.path.join(scratch, "tmp")
    os.mkdir(work)
    os.mkdir(tmp)
    try:
        if root:  # the command's own: it runs as plan.uid
            for d in (scratch, work, tmp):
                try:
                    os.chown(d, plan.uid, plan.gid)
                except OSError as exc:
                    raise SandboxSetupError(
                        f"cannot give {d} to uid {plan.uid}, the user a root caller's command runs as "
                        f"without user namespaces: {exc.strerror}", step="chown", path=d, errno=exc.errno or 0,
                    ) from None
        rules: list[landlock.Rule] = []
        for m in plan.mounts:
            if m.kind in ("ro-bind", "rw-bind") and m.source is not None:
                if m.target == WORK_DIR:
                    work = m.source
                elif os.path.realpath(m.source) != os.path.realpath(m.target):
                    raise IsolationUnavailable(
                        f"without a mount namespace {m.source} cannot appear at {m.target}; "
                        "bind it at its own path, or use the bwrap backend"
                    )
                rules.append(landlock.Rule(m.source, landlock.READ if m.kind == "ro-bind" else landlock.WRITE))
        rules += [landlock.Rule(work, landlock.WRITE), landlock.Rule(tmp, landlock.WRITE)]
        rules += [landlock.Rule(f"/dev/{d}", landlock.DEVICES) for d in ("null", "zero", "full", "random", "urandom")]
        rules += [landlock.Rule("/proc", landlock.HOST_PROC)]
        abi = host.landlock_abi
        net = landlock.NET_BIND_TCP | landlock.NET_CONNECT_TCP if abi >= 4 and not plan.network else 0
        scoped = landlock.SCOPE_ABSTRACT_UNIX_SOCKET | landlock.SCOPE_SIGNAL if abi >= 6 else 0
        ruleset = landlock.Ruleset(abi=abi, fs=landlock.handled_fs(abi), net=net, scoped=scoped, rules=tuple(rules))
        _, host_exe = _executable(plan)
        cwd = work if plan.cwd == WORK_DIR else plan.cwd
        env = {**dict(plan.env), "TMPDIR": tmp}
        if env.get("HOME") == WORK_DIR:
            env["HOME"] = work
        missing = ["tmp:private-path", "work:at-/work", "files:/etc/passwd"]
        if root:
            flags = lib.ISO_F_CAPS | lib.ISO_F_HOST_IDS
            enforced = [f"ids:{plan.uid}", "capabilities:none"]
        else:  # dropping the bounding set needs CAP_SETPCAP; no_new_privs keeps it from mattering to exec
            flags = lib.ISO_F_HELD_CAPS
            enforced = ["capabilities:held=none"]
            # The caller's own files it may read: their mode, group and times change through a descriptor.
            missing += ["capabilities:bounding", "files:metadata-by-descriptor"]
        enforced += ["no_new_privs", "new_session", "fds:closed", "env:cleared"]
        return _Layout(flags, (), ruleset, host_exe, cwd, tuple(env.items()), tuple(enforced), tuple(missing), scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
