"""cgroup detection, and the one cgroup mechanism in use: v1 pids for a root caller.

cgroup v2 is only detected: can this caller put a sandbox in a child cgroup
with memory, pids and cpu? The limits are enforced with rlimits
(isolation.rlimits); docs/limits.md says why cgroup v2 enforcement is not
implemented yet. `PidsCgroup` (below) bounds `max_pids` for a root caller,
whom RLIMIT_NPROC does not bind, where cgroup v1 has the pids controller.

A child cgroup with those controllers needs, in the caller's own cgroup P:
cgroup v2 mounted (anywhere: hybrid hosts mount it at /sys/fs/cgroup/unified),
the controllers listed in P/cgroup.controllers (on a hybrid host they are
usually bound to v1 hierarchies instead), P writable by the caller (root, or a
delegated subtree) and the controllers enabled in P/cgroup.subtree_control, or
enableable there (P is the root cgroup or holds no process: the v2 "no
internal processes" rule).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import signal
import time
from typing import Any

import attrs

from isolation.errors import SandboxSetupError

NEEDED: tuple[str, ...] = ("memory", "pids", "cpu")


@attrs.frozen
class CgroupStatus:
    available: bool
    reason: str
    mount: str | None = None  # where cgroup v2 is mounted
    cgroup: str | None = None  # the caller's cgroup directory under that mount
    controllers: tuple[str, ...] = ()  # available in the caller's cgroup

    def to_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "mount": self.mount,
            "cgroup": self.cgroup,
            "controllers": list(self.controllers),
        }


def _mounts(mountinfo: str) -> list[tuple[str, str, str, str]]:
    """(root, mount point, fs type, super options) for each line of /proc/self/mountinfo."""
    out = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3:
            out.append((_unescape(fields[3]), _unescape(fields[4]), tail[0], tail[2]))
    return out


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo.
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _v1_hierarchies(mounts: list[tuple[str, str, str, str]]) -> dict[str, str]:
    """Controller -> mount point, for the controllers bound to cgroup v1."""
    bound = {}
    for _root, point, fstype, opts in mounts:
        if fstype == "cgroup":
            for opt in opts.split(","):
                if opt in NEEDED:
                    bound[opt] = point
    return bound


def cgroup_status(mountinfo: str | None = None, own_cgroup: str | None = None) -> CgroupStatus:
    """Whether the caller can create a child cgroup with memory, pids and cpu, and why not."""
    mountinfo = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
    own_cgroup = _read("/proc/self/cgroup") if own_cgroup is None else own_cgroup
    mounts = _mounts(mountinfo or "")
    v2 = [(root, point) for root, point, fstype, _ in mounts if fstype == "cgroup2"]
    if not v2:
        return CgroupStatus(False, "cgroup v2 is not mounted")
    rel = next((line[3:] for line in (own_cgroup or "").splitlines() if line.startswith("0::")), None)
    if rel is None:
        return CgroupStatus(False, "this process is in no cgroup v2 hierarchy", mount=v2[0][1])
    mroot, mount = next(((r, p) for r, p in v2 if rel == r or rel.startswith(r.rstrip("/") + "/")), v2[0])
    if not (rel == mroot or rel.startswith(mroot.rstrip("/") + "/")):
        return CgroupStatus(False, f"this process's cgroup {rel} is outside the cgroup v2 mount at {mount}", mount)
    cgroup = os.path.normpath(os.path.join(mount, os.path.relpath(rel, mroot)))
    controllers = tuple((_read(os.path.join(cgroup, "cgroup.controllers")) or "").split())
    missing = [c for c in NEEDED if c not in controllers]
    if missing:
        v1 = _v1_hierarchies(mounts)
        where = "; ".join(f"{c} is bound to the cgroup v1 hierarchy at {v1[c]}" for c in missing if c in v1)
        reason = (
            f"cgroup v2 at {mount}: controller(s) {', '.join(missing)} not available in {cgroup} "
            f"(available: {' '.join(controllers) or 'none'})" + (f"; {where}" if where else "")
        )
        return CgroupStatus(False, reason, mount, cgroup, controllers)
    files = [os.path.join(cgroup, n) for n in ("", "cgroup.procs", "cgroup.subtree_control")]
    if not all(os.access(f, os.W_OK) for f in files):
        return CgroupStatus(
            False,
            f"{cgroup} is not writable by uid {os.geteuid()} (not root and not delegated)",
            mount,
            cgroup,
            controllers,
        )
    enabled = (_read(os.path.join(cgroup, "cgroup.subtree_control")) or "").split()
    if all(c in enabled for c in NEEDED):
        return CgroupStatus(
            True, f"{cgroup} is writable and enables {' '.join(NEEDED)} for children", mount, cgroup, controllers
        )
    procs = (_read(os.path.join(cgroup, "cgroup.procs")) or "").split()
    if rel != "/" and procs:
        return CgroupStatus(
            False,
            f"{cgroup} holds processes, so {' '.join(NEEDED)} cannot be enabled for its children "
            "(cgroup v2 allows no internal processes); run in a delegated cgroup whose processes sit in a leaf",
            mount,
            cgroup,
            controllers,
        )
    return CgroupStatus(
        True, f"{cgroup} is writable and can enable {' '.join(NEEDED)} for children", mount, cgroup, controllers
    )


# --- cgroup v1 pids: max_pids for a root caller -------------------------------------
#
# RLIMIT_NPROC does not bind host uid 0, which is who a root caller's sandbox
# runs as. Where cgroup v1 binds the pids controller (hybrid hosts) and the
# caller can write its cgroup there (root), a child cgroup with pids.max bounds
# the sandbox's tasks instead. Each sandbox gets its own directory, removed
# once the sandbox has ended; directories of callers that died are swept.

PIDS_PREFIX = "isolation-"
_seq = itertools.count()


@functools.cache
def pids_v1_parent() -> str | None:
    """The caller's own cgroup in a cgroup v1 pids hierarchy, if it may create children there."""
    if os.geteuid() != 0:
        return None
    mounts = _mounts(_read("/proc/self/mountinfo") or "")
    rel = None
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "pids" in parts[1].split(","):
            rel = parts[2]
    if rel is None:
        return None
    for root, point, fstype, opts in mounts:
        if fstype == "cgroup" and "pids" in opts.split(",") and (rel == root or rel.startswith(root.rstrip("/") + "/")):
            path = os.path.normpath(os.path.join(point, os.path.relpath(rel, root)))
            if os.access(os.path.join(path, "cgroup.procs"), os.W_OK) and os.access(path, os.W_OK):
                return path
    return None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _sweep(parent: str) -> None:
    """Remove the (empty) cgroups of callers that died before removing theirs."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(PIDS_PREFIX):
            continue
        owner = name[len(PIDS_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, name))


@attrs.frozen
class PidsCgroup:
    path: str

    @classmethod
    def create(cls, parent: str, max_tasks: int) -> PidsCgroup:
        _sweep(parent)
        path = os.path.join(parent, f"{PIDS_PREFIX}{os.getpid()}-{next(_seq)}")
        os.mkdir(path, 0o755)
        try:
            _write(os.path.join(path, "pids.max"), str(max_tasks))
        except BaseException:
            os.rmdir(path)
            raise
        return cls(path)

    @classmethod
    def create_for_sandbox(cls, parent: str, max_tasks: int) -> PidsCgroup:
        """`create`, failing as the sandbox setup step it is."""
        try:
            return cls.create(parent, max_tasks)
        except OSError as exc:
            raise SandboxSetupError.from_oserror(
                exc, f"cannot create a pids cgroup under {parent}", step="cgroup", path=parent
            ) from None

    def add(self, pid: int) -> None:
        _write(os.path.join(self.path, "cgroup.procs"), str(pid))

    def refused_forks(self) -> int:
        """How many forks the limit refused (pids.events "max")."""
        for line in (_read(os.path.join(self.path, "pids.events")) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit():
                return int(value)
        return 0

    def remove(self, attempts: int = 200) -> bool:
        """Kill what is left in it and remove it; False if it stayed busy (a later sweep removes it)."""
        for _ in range(attempts):
            for pid in (_read(os.path.join(self.path, "cgroup.procs")) or "").split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
            time.sleep(0.005)
        return False
