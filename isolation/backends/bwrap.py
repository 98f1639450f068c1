"""The `bwrap` backend: the plan rendered as a bubblewrap command line."""

from __future__ import annotations

import atexit
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence

import attrs

from isolation.backends import devcopies, owned_dirs
from isolation.backends.base import Availability, Enforcement, Launched, Stdio
from isolation.backends.children import BwrapChild, poll_fd
from isolation.cgroups import PidsCgroup
from isolation.errors import BwrapFromPathWarning, IsolationUnavailable, SandboxSetupError
from isolation.paths import is_executable_file
from isolation.plan import Mount, SandboxPlan, build_plan, tmpfs_bound, with_parts
from isolation.policy import IsolationPolicy
from isolation.rlimits import RlimitSetting, sandbox_enforced_limits, sandbox_limits
from isolation.userns import userns_status

# Searched before $PATH: a bwrap that any user could have put first in $PATH
# would see (and could alter) everything the sandbox is meant to hide.
TRUSTED_BWRAP_PATHS: tuple[str, ...] = ("/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap")
SECCOMP_FD_PLACEHOLDER = "<seccomp-fd>"
DEV_COPIES_PLACEHOLDER = "<private-dev-nodes>"
# The sandbox's /dev is built from the plan alone (not bubblewrap's --dev, which binds
# six host nodes of its own choosing, mounts an unbounded devpts and may bind the
# caller's terminal as /dev/console): a tmpfs holding exactly the plan's `device`
# nodes, the links below, a bounded /dev/shm, then read-only, as native builds it.
# For a root caller the sandbox user is host uid 0 and owns the host's nodes: it
# could chmod or touch the host's own /dev/null. bubblewrap cannot bind a node
# read-only and still usable (its read-only binds add nodev), so a root caller's
# sandbox gets private copies (mknod, one directory per run: `devcopies`) of the plan's nodes bound instead.
DEV_LINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
             ("/proc/self/fd/2", "stderr"))  # fmt: skip


INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"

_path_warned = False
_lock = threading.Lock()


def find_bwrap() -> str | None:
    """The bubblewrap executable: trusted system paths first, then $PATH (warned once)."""
    global _path_warned
    for p in TRUSTED_BWRAP_PATHS:
        if is_executable_file(p):
            return p
    found = shutil.which("bwrap")
    if found is not None:
        with _lock:
            if not _path_warned:
                _path_warned = True
                warnings.warn(
                    f"using bubblewrap from $PATH ({found}), not from a trusted system location",
                    BwrapFromPathWarning,
                    stacklevel=2,
                )
    return found


@functools.cache
def bwrap_version(bwrap: str) -> tuple[int, ...]:
    """bubblewrap's version, e.g. (0, 8, 0); () when it cannot be determined."""
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(x) for x in m.groups(default="0")) if m else ()


# The per-process directory of `_data_file`s and the pid that made it: a forked
# child makes its own (its parent may remove the inherited one at exit).
_data_dir: tuple[int, str] | None = None


def _data_dir_path() -> str:
    """This process's data directory, created on first use; leftovers of dead callers are swept then."""
    global _data_dir
    pid = os.getpid()
    if _data_dir is None or _data_dir[0] != pid:
        path = owned_dirs.make(tempfile.gettempdir(), "data")
        _data_dir = (pid, path)
        atexit.register(_remove_data_dir, pid, path)
    return _data_dir[1]


def _remove_data_dir(pid: int, path: str) -> None:
    if os.getpid() == pid:  # atexit handlers are inherited by forked children
        shutil.rmtree(path, ignore_errors=True)


def _data_file(content: bytes) -> str:
    """A read-only file holding `content`, for `--ro-bind` (content-addressed, per process)."""
    with _lock:
        path = os.path.join(_data_dir_path(), hashlib.sha256(content).hexdigest()[:32])
        if not os.path.exists(path):
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(content)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
    return path


def _mask_file() -> str:
    """An empty file nobody may open (mode 0000), bound over each `mask` target: the
    sandbox has no capability to override its mode. For a root caller it belongs to
    host uid 65534, which the root-mapped sandbox user is not, so it cannot chmod it
    back either and a writable bind is enough (see `_mask_bind`)."""
    path = os.path.join(os.path.dirname(_data_file(b"")), "mask-0000")
    if not os.path.exists(path):
        with _lock:
            if not os.path.exists(path):
                tmp = f"{path}.{threading.get_ident()}.tmp"
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
                os.chmod(tmp, 0)
                if os.geteuid() == 0:
                    os.chown(tmp, MASK_OWNER, MASK_OWNER)
                os.replace(tmp, path)
    return path


# Owner of a root caller's mask file: not the sandbox user's host uid (0).
MASK_OWNER = 65534


def _mask_bind() -> str:
    """bubblewrap re-reads the mount table for each read-only bind (about 0.2 ms a
    mask): a root caller's mask file is safe writable (not the sandbox's, mode 0000);
    anyone else's belongs to the sandbox user, who could chmod it, so read-only."""
    return "--bind" if os.geteuid() == 0 else "--ro-bind"


# The static program bubblewrap executes in place of the command (native/bwrap_exec.c).
EXEC_PROGRAM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_isolation_exec")


@attrs.frozen
class ExecReport:
    """What `_isolation_exec` is given: descriptors (as numbered inside bubblewrap) of
    the report pipe's write end, the command's real stderr and the program itself,
    and the command's path inside the sandbox (it executes that path, no search)."""

    report_fd: int
    stderr_fd: int
    self_fd: int
    path: str


def plan_to_bwrap_args(
    plan: SandboxPlan,
    bwrap: str,
    *,
    seccomp_fd: int | None = None,
    info_fd: int | None = None,
    block_fd: int | None = None,
    dev_copies: str | None = None,
    exec_report: ExecReport | None = None,
) -> list[str]:
    """The bubblewrap argv for `plan`. Every namespace is requested explicitly, so a
    namespace the kernel cannot create makes bwrap fail instead of being skipped.

    `info_fd`: bubblewrap writes the sandbox init's host pid there (JSON). `block_fd`:
    the sandbox waits, set up but before running the command, until a byte arrives.
    `exec_report`: bubblewrap executes `_isolation_exec` (from a descriptor), which
    reports whether the command's execve happened (see `ExecReport`).
    """
    args = [bwrap, "--unshare-all", "--unshare-user", "--unshare-cgroup"]
    if plan.network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session", "--uid", str(plan.uid), "--gid", str(plan.gid)]
    if bwrap_version(bwrap) >= (0, 8, 0):
        args.append("--disable-userns")
    args += ["--hostname", plan.hostname, "--cap-drop", "ALL", "--clearenv"]
    for k, v in plan.env:
        args += ["--setenv", k, v]
    mask: list[str] | None = None
    for m, parts in with_parts(plan.mounts):
        if m.kind == "ro-bind":
            args += ["--ro-bind", str(m.source), m.target]
        elif m.kind == "rw-bind":
            args += ["--bind", str(m.source), m.target]
        elif m.kind == "symlink":
            args += ["--symlink", str(m.source), m.target]
        elif m.kind == "tmpfs":
            args += [*_size(m), "--tmpfs", m.target]
        elif m.kind == "proc":
            args += ["--proc", m.target]
            # Its `proc-ro` parts: bubblewrap covers some knobs itself, but only those it finds
            # writable at setup, judged by the directory's own mode: /proc/sys (r-x) is skipped
            # while the files in it stay writable by host uid 0, which is who 65534 inside is for
            # a root caller. bubblewrap binds from the host's tree: the host's /proc entry of that
            # name, the same host-wide knob (one the host lacks is skipped, as native skips it).
            for p in parts:
                host = f"/proc/{os.path.basename(p.target)}"
                if os.path.exists(host):
                    args += ["--ro-bind", host, p.target]
        elif m.kind == "dev":
            args += _dev(m, parts, dev_copies)
        elif m.kind == "file":
            args += ["--ro-bind", _data_file(m.data or b""), m.target]
        elif m.kind == "mask":
            # bubblewrap fails on a target it cannot create under /proc: one that has gone since the
            # plan was made (a host network interface removed, with Network) is skipped, as native does.
            if os.path.lexists(m.target):
                if mask is None:  # one look-up per argv, not per mask
                    mask = [_mask_bind(), _mask_file()]
                args += [*mask, m.target]
        else:  # pragma: no cover - the plan's kinds are closed
            raise AssertionError(m.kind)
    args += ["--remount-ro", "/", "--chdir", plan.cwd]
    if plan.seccomp is not None:
        args += ["--seccomp", SECCOMP_FD_PLACEHOLDER if seccomp_fd is None else str(seccomp_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    if block_fd is not None:
        args += ["--block-fd", str(block_fd)]
    if exec_report is None:
        args += ["--", *plan.argv]
    else:
        r = exec_report
        fds = (str(r.report_fd), str(r.stderr_fd), str(r.self_fd))
        args += ["--", f"/proc/self/fd/{r.self_fd}", *fds, r.path, *plan.argv]
    return args


def _dev(dev: Mount, devices: Sequence[Mount], copies: str | None) -> list[str]:
    """The arguments that build the /dev `dev` from the plan: a tmpfs (mode 0755) with
    exactly its `devices`, each the host's node or a root caller's private copy (in
    `copies`); the `DEV_LINKS`; a bounded /dev/shm; then the /dev read-only. No devpts:
    bubblewrap's argv cannot bound one (no max=), so no ptys at all, no pts, no ptmx."""
    args = [*_size(dev), "--perms", "0755", "--tmpfs", dev.target]
    for m in devices:
        source = str(m.source) if copies is None else f"{copies}/{os.path.basename(m.target)}"
        args += ["--dev-bind", source, m.target]
    for link, name in DEV_LINKS:
        args += ["--symlink", link, f"{dev.target}/{name}"]
    args += [*_size(dev), "--perms", "1777", "--tmpfs", f"{dev.target}/shm"]
    # Read-only, as the native /dev is: nothing can be added to it (the binds and /dev/shm
    # are mounts of their own, which this leaves as they are).
    return [*args, "--remount-ro", dev.target]


def _size(m: Mount) -> list[str]:
    if m.size is None or m.size <= 0:  # 0 would mean "no bound" to the kernel
        raise AssertionError(f"the plan's {m.kind} at {m.target} carries no size bound")
    return ["--size", str(m.size)]


def mount_bounds(plan: SandboxPlan) -> list[str]:
    """Claims for the bounds plan_to_bwrap_args gives the sandbox's own file systems:
    --size on every writable tmpfs; no ptys at all (no devpts is mounted, see `_dev`)."""
    claims: list[str] = []
    size = tmpfs_bound(plan.mounts)
    if size is not None:
        claims.append(f"limit:tmpfs_size={size}:tmpfs")
    if any(m.kind == "dev" for m in plan.mounts):
        claims.append("limit:max_ptys=0:no-devpts")
    return claims


def build_bwrap_command(
    policy: IsolationPolicy,
    argv: Sequence[str],
    bwrap: str | None = None,
    *,
    seccomp_fd: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The bubblewrap command line that enforces `policy` for `argv`.

    When the policy has a seccomp filter, bubblewrap reads it from `seccomp_fd`;
    without one the argument is the placeholder ``<seccomp-fd>`` (the backend
    fills in the descriptor of a memfd holding the filter at launch).
    """
    plan = build_plan(policy, argv, environ=environ)
    dev = DEV_COPIES_PLACEHOLDER if os.geteuid() == 0 else None
    return plan_to_bwrap_args(plan, bwrap or find_bwrap() or "bwrap", seccomp_fd=seccomp_fd, dev_copies=dev)


_ENFORCED_BASE = (
    "namespace:user",
    "namespace:mount",
    "namespace:pid",
    "namespace:ipc",
    "namespace:uts",
    "namespace:cgroup",
    "rootfs:minimal",
    "ids:65534",
    "capabilities:none",
    "no_new_privs",
    "new_session",
    "fds:closed",
    "env:cleared",
)


# How long launch() waits for bubblewrap to report the sandbox's init.
_INFO_TIMEOUT = 30.0


def _read_to_eof(fd: int, deadline: float, what: str) -> bytes:
    """Everything written to pipe `fd` until its last writer closes it; SandboxSetupError past `deadline`."""
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poll_fd(fd, remaining):
            raise SandboxSetupError(f"bubblewrap did not {what} within {_INFO_TIMEOUT:g}s", step="bwrap")
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


def _read_init_pid(info_fd: int, deadline: float) -> int | None:
    """The sandbox init's host pid from bubblewrap's --info-fd; None when bubblewrap
    exited before creating the sandbox (its error message is on its stderr pipe)."""
    data = _read_to_eof(info_fd, deadline, "report its sandbox")
    if not data:
        return None
    try:
        pid = json.loads(data)["child-pid"]
    except (ValueError, KeyError, TypeError):
        raise SandboxSetupError(
            f"unexpected --info-fd output from bubblewrap: {data[:200]!r}",
            step="info-fd",
        ) from None
    if not isinstance(pid, int) or pid <= 0:
        raise SandboxSetupError(f"unexpected child-pid from bubblewrap: {pid!r}", step="info-fd")
    return pid


def _exec_outcome(report: bytes, command: str) -> None:
    """Return if `_isolation_exec`'s report says the command was executed, else raise."""
    if report[:1] != b"R":
        # The report's only writer is gone without a byte: bubblewrap failed before
        # executing it. Its own message (read once it has exited) replaces this one.
        raise SandboxSetupError("bubblewrap failed before running the command", step="bwrap")
    if len(report) == 1:
        return  # end of file after "reached": the close-on-exec pipe closed in a successful execve
    err = int.from_bytes(report[2:6], sys.byteorder) if report[1:2] == b"E" and len(report) >= 6 else 0
    step = report[6:].decode("ascii", "replace") or "execve"
    what = f"cannot execute {command} in the sandbox" if step == "execve" else f"cannot start {command} ({step})"
    raise SandboxSetupError(
        f"{what}: {os.strerror(err) if err else 'malformed report'}", step=step, path=command, errno=err
    )


# bubblewrap's messages end with strerror(errno); map the text back to the number.
_STRERROR = {os.strerror(e): e for e in range(1, 134)}
# bubblewrap's own wording where it names no strerror (its namespace messages).
_PHRASE_ERRNO = (
    ("No permissions to create", errno.EPERM),  # "creating" upstream, "create" in Debian's build
    ("(ENOSPC)", errno.ENOSPC),
    ("does not support user namespaces", errno.EINVAL),
)
# What bubblewrap was doing, from words in its message (first match wins).
_BWRAP_STEPS = (
    ("namespace", "unshare"),
    ("uid map", "uid-map"),
    ("gid map", "uid-map"),
    ("pivot_root", "pivot_root"),
    ("mount", "mount"),
    ("slave", "mount"),
    ("bind", "mount"),
    ("source path", "mount"),
    ("create", "mount-point"),
    ("execvp", "bwrap-exec"),
    ("seccomp", "seccomp"),
)
_USERNS_HINT = (
    "; user namespaces are refused to this caller: check user.max_user_namespaces (sysctl), "
    "kernel.apparmor_restrict_unprivileged_userns (Ubuntu 23.10 and later) or the container's "
    "seccomp profile (docker run --security-opt)"
)


def _bwrap_error(stderr: bytes, fallback: SandboxSetupError) -> SandboxSetupError:
    """The SandboxSetupError for bubblewrap's own message on its stderr (`fallback` if none)."""
    lines = [ln[len("bwrap: ") :] for ln in stderr.decode("utf-8", "replace").splitlines() if ln.startswith("bwrap: ")]
    if not lines:
        return fallback
    line = lines[-1].strip()
    head, _, tail = line.rpartition(": ")
    err = _STRERROR.get(tail, 0) if head else 0
    err = err or next((e for phrase, e in _PHRASE_ERRNO if phrase in line), 0)
    lower = line.lower()
    step = next((st for word, st in _BWRAP_STEPS if word in lower), "bwrap")
    m = re.search(r"(?:^|\s)(/(?!/)[^\s:]*)", line)
    path = "" if m is None else (m.group(1).removeprefix("/newroot") or "/")
    hint = _USERNS_HINT if step == "unshare" else ""
    return SandboxSetupError(
        f"bubblewrap could not set up the sandbox, the command did not run: {line.rstrip('.')}{hint}",
        step=step, path=path, errno=err,
    )  # fmt: skip


def _open_init(pid: int, monitor: int) -> int:
    """A pidfd on the sandbox's init, checked to still be the monitor's child (so not a reused pid)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return -1
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        ppid = -1
    if ppid != monitor:
        # Already reparented: the monitor is gone, and so is the sandbox (die-with-parent).
        os.close(fd)
        return -1
    return fd


def _apply_rlimits(pid: int, settings: Sequence[RlimitSetting]) -> None:
    for st in settings:
        # bubblewrap's init (pid 1 of the sandbox) runs as the sandbox user and
        # counts against RLIMIT_NPROC too: allow for it.
        extra = 1 if st.name == "max_pids" else 0
        try:
            resource.prlimit(pid, st.resource, (st.soft + extra, st.hard + extra))
        except OSError as exc:
            raise SandboxSetupError(
                f"cannot apply limits.{st.name} to the sandbox (prlimit: {exc.strerror})",
                step="prlimit",
                path=f"/proc/{pid}",
                errno=exc.errno or 0,
            ) from None


def _join_cgroup(cgroup: PidsCgroup, pid: int) -> None:
    try:
        cgroup.add(pid)
    except OSError as exc:
        raise SandboxSetupError.from_oserror(
            exc, f"cannot move the sandbox into {cgroup.path}", step="cgroup", path=cgroup.path
        ) from None


def _start(
    child: BwrapChild,
    info_r: int,
    block_w: int,
    report_r: int,
    settings: Sequence[RlimitSetting],
    cgroup: PidsCgroup | None,
    command: str,
) -> None:
    """Follow bubblewrap from its start to the command's execve: apply the limits to
    the blocked sandbox, then wait for `_isolation_exec`'s report. Returns once the
    command has been executed; raises SandboxSetupError when it was not."""
    deadline = time.monotonic() + _INFO_TIMEOUT
    init_pid = _read_init_pid(info_r, deadline)
    if init_pid is not None:
        child.track_init(_open_init(init_pid, child.pid))
        if block_w >= 0:
            if child.init_pidfd < 0:
                raise SandboxSetupError("the sandbox ended before its limits could be applied", step="prlimit")
            # The sandbox is set up and waits on its block fd: the command has not run yet.
            _apply_rlimits(init_pid, settings)
            if cgroup is not None:
                _join_cgroup(cgroup, init_pid)
            try:
                os.write(block_w, b"1")
            except BrokenPipeError:  # its set-up failed meanwhile: bubblewrap's message says why
                raise SandboxSetupError("the sandbox ended before it could start", step="block-fd") from None
    _exec_outcome(_read_to_eof(report_r, deadline, "start the command"), command)


class BwrapBackend:
    name = "bwrap"

    @property
    def enforced_limits(self) -> frozenset[str]:
        """Limits this backend enforces: rlimits with prlimit(2) on the blocked
        sandbox, a root caller's max_pids with a cgroup (see `sandbox_enforced_limits`)."""
        return sandbox_enforced_limits()

    def availability(self) -> Availability:
        bwrap = find_bwrap()
        if bwrap is None:
            return Availability(False, f"bubblewrap not found; {INSTALL_HINT}")
        from isolation.backends import canary

        if not is_executable_file(EXEC_PROGRAM):
            return Availability(False, f"{EXEC_PROGRAM} is missing; reinstall isolation")
        ok, why = userns_status()
        if not ok:
            return Availability(False, f"bubblewrap needs unprivileged user namespaces: {why}")
        launch = functools.partial(self.launch, enforcement="strict")
        return canary.check(self.name, launch, f"{bwrap} {'.'.join(map(str, bwrap_version(bwrap)))}")

    def verify(self, enforcement: Enforcement) -> None:
        """Raise what a run would raise while setting up on this host (a minimal real
        sandbox, once per process; see canary). bwrap has one rung: `enforcement` is moot."""
        from isolation.backends import canary

        if find_bwrap() is None:
            raise IsolationUnavailable(f"the bwrap backend needs bubblewrap: {INSTALL_HINT}")
        canary.require(self.name, functools.partial(self.launch, enforcement="strict"))

    def launcher(self, plan: SandboxPlan, enforcement: Enforcement) -> Callable[[Stdio], Launched]:
        """`launch` of `plan` (nothing of it is worked out ahead of a run here)."""
        return functools.partial(self.launch, plan, enforcement=enforcement)

    def launch(self, plan: SandboxPlan, stdio: Stdio, *, enforcement: Enforcement = "strict") -> Launched:
        bwrap = find_bwrap()
        if bwrap is None:
            raise IsolationUnavailable(f"the bwrap backend needs bubblewrap: {INSTALL_HINT}")
        if not is_executable_file(EXEC_PROGRAM):
            raise IsolationUnavailable(
                f"the bwrap backend needs {EXEC_PROGRAM}, built with the package; reinstall isolation "
                "(or run `setup.py build_ext --inplace` in a source tree)"
            )
        max_pids = plan.policy.limits.max_pids
        mechanisms = sandbox_limits(plan.policy.limits)
        settings = mechanisms.rlimits
        cgroup: PidsCgroup | None = None
        if mechanisms.pids_cgroup_parent is not None and max_pids is not None:
            cgroup = PidsCgroup.create_for_sandbox(mechanisms.pids_cgroup_parent, max_pids + 1)  # + bwrap's init
        blocked = bool(settings) or cgroup is not None
        child_ends: list[int] = []
        info_r = block_w = report_r = err_r = err_w = -1
        dev_copies: str | None = None
        try:
            seccomp_fd: int | None = None
            if plan.seccomp is not None:
                seccomp_fd = os.memfd_create("isolation-seccomp", os.MFD_CLOEXEC)
                child_ends.append(seccomp_fd)
                os.write(seccomp_fd, plan.seccomp.bpf)
                os.lseek(seccomp_fd, 0, os.SEEK_SET)
            info_r, info_w = os.pipe2(os.O_CLOEXEC)
            child_ends.append(info_w)
            block_r: int | None = None
            if blocked:
                block_r, block_w = os.pipe2(os.O_CLOEXEC)
                child_ends.append(block_r)
            # bubblewrap's own stderr is a pipe we read (its message explains a failed
            # set-up); _isolation_exec hands the command the real one.
            report_r, report_w = os.pipe2(os.O_CLOEXEC)
            child_ends.append(report_w)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            child_ends.append(err_w)  # becomes bubblewrap's fd 2, nothing else
            child_ends.append(fcntl.fcntl(stdio.stderr, fcntl.F_DUPFD_CLOEXEC, 3))
            child_ends.append(os.open(EXEC_PROGRAM, os.O_RDONLY | os.O_CLOEXEC))
            found = plan.executable or plan.find_executable(plan.argv[0])
            report = ExecReport(report_w, child_ends[-2], child_ends[-1], found[0] if found else plan.argv[0])
            if os.geteuid() == 0 and any(m.kind == "dev" for m in plan.mounts):
                dev_copies = devcopies.take([m for m in plan.mounts if m.kind == "device"])
            args = plan_to_bwrap_args(
                plan,
                bwrap,
                seccomp_fd=seccomp_fd,
                info_fd=info_w,
                block_fd=block_r,
                dev_copies=dev_copies,
                exec_report=report,
            )
            try:
                proc = subprocess.Popen(
                    args,
                    stdin=stdio.stdin,
                    stdout=stdio.stdout,
                    stderr=err_w,
                    env={},
                    close_fds=True,
                    pass_fds=tuple(fd for fd in child_ends if fd != err_w),
                    start_new_session=True,
                )
            except OSError as exc:
                raise SandboxSetupError.from_oserror(
                    exc, f"cannot execute bubblewrap {bwrap}", step="execve", path=bwrap
                ) from None
        except BaseException:
            for fd in (info_r, block_w, report_r, err_r):
                if fd >= 0:
                    os.close(fd)
            if cgroup is not None:
                cgroup.remove()
            if dev_copies is not None:
                devcopies.discard(dev_copies)
            raise
        finally:
            for fd in child_ends:
                os.close(fd)
        child = BwrapChild(proc, -1, cgroup, dev_copies, err_r)
        try:
            _start(child, info_r, block_w, report_r, settings, cgroup, plan.argv[0])
        except BaseException as exc:
            # Kill before the block fd closes: on EOF bubblewrap would go on without the limits.
            child.kill()
            child.wait()
            error = _bwrap_error(child.bwrap_stderr(), exc) if isinstance(exc, SandboxSetupError) else None
            child.release()
            if error is not None:
                raise error from None
            raise
        finally:
            for fd in (info_r, block_w, report_r):
                if fd >= 0:
                    os.close(fd)
        child.started = True
        enforced = list(_ENFORCED_BASE)
        if not plan.network:
            enforced.insert(3, "namespace:net")
        if plan.seccomp is not None:
            enforced.append(f"seccomp:{plan.seccomp.profile}:sha256={plan.seccomp.digest}")
        enforced += [st.claim for st in settings]
        enforced += mount_bounds(plan)
        if cgroup is not None:
            enforced.append(f"limit:max_pids={max_pids}:cgroup-v1")
        return Launched(child, tuple(enforced))
