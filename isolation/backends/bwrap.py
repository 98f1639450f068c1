"""The `bwrap` backend: the plan rendered as a bubblewrap command line."""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Mapping, Sequence

from isolation.backends.base import Availability, Enforcement, Launched, Stdio
from isolation.errors import BwrapFromPathWarning, IsolationUnavailable, SandboxSetupError
from isolation.plan import SandboxPlan, build_plan
from isolation.policy import IsolationPolicy
from isolation.userns import userns_status

# Searched before $PATH: a bwrap that any user could have put first in $PATH
# would see (and could alter) everything the sandbox is meant to hide.
TRUSTED_BWRAP_PATHS: tuple[str, ...] = ("/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap")
SECCOMP_FD_PLACEHOLDER = "<seccomp-fd>"
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"

_path_warned = False
_lock = threading.Lock()


def find_bwrap() -> str | None:
    """The bubblewrap executable: trusted system paths first, then $PATH (warned once)."""
    global _path_warned
    for p in TRUSTED_BWRAP_PATHS:
        if os.path.isfile(p) and os.access(p, os.X_OK):
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


_data_dir: str | None = None


def _data_file(content: bytes) -> str:
    """A read-only file holding `content`, for `--ro-bind` (content-addressed, per process)."""
    global _data_dir
    with _lock:
        if _data_dir is None:
            _data_dir = tempfile.mkdtemp(prefix="isolation-data-")
            atexit.register(shutil.rmtree, _data_dir, True)
        path = os.path.join(_data_dir, hashlib.sha256(content).hexdigest()[:32])
        if not os.path.exists(path):
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(content)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
    return path


def plan_to_bwrap_args(plan: SandboxPlan, bwrap: str, *, seccomp_fd: int | None = None) -> list[str]:
    """The bubblewrap argv for `plan`. Every namespace is requested explicitly, so a
    namespace the kernel cannot create makes bwrap fail instead of being skipped."""
    args = [bwrap, "--unshare-all", "--unshare-user", "--unshare-cgroup"]
    if plan.network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session", "--uid", str(plan.uid), "--gid", str(plan.gid)]
    if bwrap_version(bwrap) >= (0, 8, 0):
        args.append("--disable-userns")
    args += ["--hostname", plan.hostname, "--cap-drop", "ALL", "--clearenv"]
    for k, v in plan.env:
        args += ["--setenv", k, v]
    for m in plan.mounts:
        if m.kind == "ro-bind":
            args += ["--ro-bind", str(m.source), m.target]
        elif m.kind == "rw-bind":
            args += ["--bind", str(m.source), m.target]
        elif m.kind == "symlink":
            args += ["--symlink", str(m.source), m.target]
        elif m.kind == "tmpfs":
            args += ["--tmpfs", m.target]
        elif m.kind == "proc":
            args += ["--proc", m.target]
        elif m.kind == "dev":
            args += ["--dev", m.target]
        elif m.kind == "file":
            args += ["--ro-bind", _data_file(m.data or b""), m.target]
        else:  # pragma: no cover - the plan's kinds are closed
            raise AssertionError(m.kind)
    args += ["--remount-ro", "/", "--chdir", plan.cwd]
    if plan.seccomp is not None:
        args += ["--seccomp", SECCOMP_FD_PLACEHOLDER if seccomp_fd is None else str(seccomp_fd)]
    args += ["--", *plan.argv]
    return args


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
    return plan_to_bwrap_args(plan, bwrap or find_bwrap() or "bwrap", seccomp_fd=seccomp_fd)


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


class PopenChild:
    """A `Child` over subprocess.Popen whose process group is the whole sandbox on the host side."""

    def __init__(self, proc: subprocess.Popen[bytes], *, kill_group: bool) -> None:
        self._proc = proc
        self._kill_group = kill_group

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll(self) -> int | None:
        rc = self._proc.poll()
        if rc is not None:
            self._reap_group()
        return rc

    def wait(self, timeout: float | None = None) -> int:
        rc = self._proc.wait(timeout)
        self._reap_group()
        return rc

    def send_signal(self, sig: int) -> None:
        self._proc.send_signal(sig)

    def kill(self) -> None:
        if self._proc.returncode is None:
            self._killpg()
            self._proc.kill()
        self._reap_group()

    def _killpg(self) -> None:
        if self._kill_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, 9)

    def _reap_group(self) -> None:
        # Processes the command left behind in its group (on the host for `none`)
        # must not outlive the run.
        if self._proc.returncode is not None:
            self._killpg()


class BwrapBackend:
    name = "bwrap"

    def availability(self) -> Availability:
        bwrap = find_bwrap()
        if bwrap is None:
            return Availability(False, f"bubblewrap not found; {INSTALL_HINT}")
        ok, why = userns_status()
        if not ok:
            return Availability(False, f"bubblewrap needs unprivileged user namespaces: {why}")
        return Availability(True, f"{bwrap} {'.'.join(map(str, bwrap_version(bwrap)))}")

    def launch(self, plan: SandboxPlan, stdio: Stdio, *, enforcement: Enforcement = "strict") -> Launched:
        bwrap = find_bwrap()
        if bwrap is None:
            raise IsolationUnavailable(f"the bwrap backend needs bubblewrap: {INSTALL_HINT}")
        seccomp_fd = -1
        pass_fds: tuple[int, ...] = ()
        if plan.seccomp is not None:
            seccomp_fd = os.memfd_create("isolation-seccomp", os.MFD_CLOEXEC)
            os.write(seccomp_fd, plan.seccomp.bpf)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
            pass_fds = (seccomp_fd,)
        try:
            args = plan_to_bwrap_args(plan, bwrap, seccomp_fd=seccomp_fd if pass_fds else None)
            try:
                proc = subprocess.Popen(
                    args,
                    stdin=stdio.stdin,
                    stdout=stdio.stdout,
                    stderr=stdio.stderr,
                    env={},
                    close_fds=True,
                    pass_fds=pass_fds,
                    start_new_session=True,
                )
            except OSError as exc:
                raise SandboxSetupError(
                    f"cannot execute bubblewrap {bwrap}: {exc.strerror}",
                    step="execve",
                    path=bwrap,
                    errno=exc.errno or 0,
                ) from None
        finally:
            if pass_fds:
                os.close(seccomp_fd)
        enforced = list(_ENFORCED_BASE)
        if not plan.network:
            enforced.insert(3, "namespace:net")
        if plan.seccomp is not None:
            enforced.append(f"seccomp:{plan.seccomp.profile}:sha256={plan.seccomp.digest}")
        return Launched(PopenChild(proc, kill_group=True), tuple(enforced))
