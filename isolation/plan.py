"""`SandboxPlan`: the backend-neutral, fully resolved description of one sandbox.

Both backends build exactly this plan: the same mounts in the same order, the
same environment, the same seccomp filter. `isolation plan` prints it.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from isolation import sysview
from isolation.errors import CommandNotExecutable, CommandNotFound, PolicyError
from isolation.paths import is_executable_file, is_within
from isolation.policy import IsolationPolicy, python_paths
from isolation.seccomp import SeccompFilter, compile_filter

MountKind = Literal["ro-bind", "rw-bind", "tmpfs", "proc", "dev", "symlink", "file", "mask"]

SANDBOX_UID = 65534
SANDBOX_GID = 65534
WORK_DIR = "/work"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Variable names that look like credentials: called out when they are withheld.
SECRET_HINTS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")


@attrs.frozen(cache_hash=True)  # plans are compared and used as cache keys on every run
class Mount:
    """One step of building the sandbox's file system, applied in plan order.

    `ro-bind`/`rw-bind`: `source` is the host path. `symlink`: `source` is the
    link text. `file`: `data` is the content of a read-only file. `tmpfs`,
    `proc`, `dev`: fresh file systems. `mask`: an empty file nobody may open
    (mode 0000, read-only mount) over the existing file `target`, skipped when
    `target` does not exist inside (used for host-wide /proc entries, see
    `sysview.proc_masks`).
    """

    kind: MountKind
    target: str
    source: str | None = None
    data: bytes | None = None
    origin: str = "system"  # "system", "network", "policy", "work", "sandbox": why this mount exists

    @property
    def writable(self) -> bool:
        return self.kind in ("rw-bind", "tmpfs", "proc", "dev")  # "mask": read-only


@attrs.frozen(cache_hash=True)  # a run's recipe keeps its plan: the backend's caches hash it per run
class SandboxPlan:
    argv: tuple[str, ...]
    mounts: tuple[Mount, ...]
    env: tuple[tuple[str, str], ...]
    env_denied: tuple[str, ...]
    cwd: str
    network: bool
    seccomp: SeccompFilter | None
    policy: IsolationPolicy
    uid: int = SANDBOX_UID
    gid: int = SANDBOX_GID
    hostname: str = "sandbox"
    # (sandbox path, host path) of argv[0], found by build_plan's check; None when not checked.
    executable: tuple[str, str] | None = None

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def secret_like_denied(self) -> tuple[str, ...]:
        return tuple(n for n in self.env_denied if any(h in n.upper() for h in SECRET_HINTS))

    def to_dict(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "mounts": [
                {
                    "kind": m.kind,
                    "target": m.target,
                    "source": m.source,
                    "mode": "rw" if m.writable else "ro",
                    "origin": m.origin,
                }
                for m in self.mounts
            ],
            "env": dict(self.env),
            "env_denied": list(self.env_denied),
            "env_denied_secret_like": list(self.secret_like_denied()),
            "cwd": self.cwd,
            "network": self.network,
            "uid": self.uid,
            "gid": self.gid,
            "seccomp": None if self.seccomp is None else self.seccomp.describe(),
            "policy": self.policy.to_dict(),
        }

    # -- looking inside ----------------------------------------------------

    def host_path(self, sandbox_path: str) -> str | None:
        """Map a sandbox path to the host path it shows, following the plan's symlinks
        and the host's symlinks inside bound trees; None if nothing is visible there."""
        return _resolve(self.mounts, sandbox_path)

    def find_executable(self, name: str) -> tuple[str, str] | None:
        """(sandbox path, host path) of the executable `name` as the sandbox will see it."""
        if "/" in name:
            candidates = [name if name.startswith("/") else os.path.join(self.cwd, name)]
        else:
            path = self.env_dict.get("PATH", DEFAULT_PATH)
            candidates = [os.path.join(d, name) for d in path.split(":") if d.startswith("/")]
        for c in candidates:
            host = self.host_path(os.path.normpath(c))
            if host is not None and is_executable_file(host):
                return c, host
        return None


def _mount_for(mounts: Sequence[Mount], path: str) -> Mount | None:
    best: Mount | None = None
    for m in mounts:  # later mounts shadow earlier ones
        if is_within(path, m.target) and (best is None or len(m.target) >= len(best.target)):
            best = m
    return best


def _resolve(mounts: Sequence[Mount], path: str, depth: int = 0) -> str | None:
    if depth > 40:
        return None
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i, part in enumerate(parts):
        nxt = os.path.join(cur, part)
        if part == "..":
            nxt = os.path.dirname(cur)
        m = _mount_for(mounts, nxt)
        link: str | None = None
        if m is not None and m.kind == "symlink" and m.target == nxt:
            link = m.source
        elif m is not None and m.kind in ("ro-bind", "rw-bind") and m.source is not None:
            rel = os.path.relpath(nxt, m.target)
            host = os.path.normpath(os.path.join(m.source, rel)) if rel != "." else m.source
            if os.path.islink(host):
                link = os.readlink(host)
            elif i == len(parts) - 1:
                return host if os.path.exists(host) else None
            elif not os.path.isdir(host):
                return None
        elif i == len(parts) - 1:
            return None
        if link is not None:
            rest = "/".join(parts[i + 1 :])
            base = link if link.startswith("/") else os.path.join(cur, link)
            return _resolve(mounts, os.path.normpath(os.path.join(base, rest)), depth + 1)
        cur = nxt
    return None


def _system_mounts(network: bool) -> list[Mount]:
    mounts: list[Mount] = []
    for e in sysview.system_view(network):
        origin = "network" if e.path in sysview.NETWORK_ETC else "system"
        if e.symlink is not None:
            mounts.append(Mount("symlink", e.path, source=e.symlink, origin=origin))
        else:
            mounts.append(Mount("ro-bind", e.path, source=e.path, origin=origin))
    return mounts


def _depth(path: str) -> int:
    return path.count("/")


def build_plan(
    policy: IsolationPolicy,
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    check_paths: bool = True,
    check_executable: bool = True,
) -> SandboxPlan:
    """Resolve `policy` for `argv` on this host. Raises PolicyError before anything runs."""
    argv = tuple(argv)
    if not argv:
        raise PolicyError("empty command")
    for a in argv:
        if not isinstance(a, str) or "\x00" in a:
            raise PolicyError(f"command argument {a!r} is not a string without NUL bytes")
    if check_paths:
        policy.check_host_paths()
    environ = os.environ if environ is None else environ

    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOME": WORK_DIR, "USER": "nobody", "LOGNAME": "nobody"}
    for name in policy.env_allowlist:
        if name in environ:
            env[name] = environ[name]
    denied = tuple(sorted(n for n in environ if n not in policy.env_allowlist))

    plan = SandboxPlan(
        argv=argv,
        mounts=policy_mounts(policy),
        env=tuple(env.items()),
        env_denied=denied,
        cwd=WORK_DIR,
        network=policy.network,
        seccomp=compile_filter(policy),
        policy=policy,
    )
    if check_executable:
        plan = with_command_checked(plan)
    return plan


@functools.lru_cache(maxsize=64)
def policy_mounts(policy: IsolationPolicy) -> tuple[Mount, ...]:
    """The mounts `policy` asks for, in plan order (cached: a policy is immutable,
    and the system view is resolved once per process)."""
    mounts = _system_mounts(policy.network)
    mounts.append(Mount("proc", "/proc", origin="sandbox"))
    mounts += [Mount("mask", path, origin="sandbox") for path in sysview.proc_masks()][:0]  # TEMP
    mounts += [
        Mount("dev", "/dev", origin="sandbox"),
        Mount("tmpfs", "/tmp", origin="sandbox"),
    ]
    if policy.work_host is None:
        mounts.append(Mount("tmpfs", WORK_DIR, origin="work"))
    else:
        mounts.append(Mount("rw-bind", WORK_DIR, source=policy.work_host, origin="work"))
    # Parents before children so a narrower bind shadows a broader one; at the
    # same depth read-only last, so read-only wins.
    user = [(b, "rw-bind") for b in policy.rw_binds] + [(b, "ro-bind") for b in policy.ro_binds]
    user.sort(key=lambda item: (_depth(item[0].sandbox), item[1] == "ro-bind"))
    for b, kind in user:
        mounts.append(Mount(kind, b.sandbox, source=b.host, origin="policy"))  # type: ignore[arg-type]
    mounts += [
        Mount("file", "/etc/passwd", data=sysview.PASSWD, origin="sandbox"),
        Mount("file", "/etc/group", data=sysview.GROUP, origin="sandbox"),
    ]
    return tuple(mounts)


# Where argv[0] was found, per (mounts, PATH, cwd, name): walking the plan's mounts and the
# host's symlinks is the costly part of planning; a hit is re-checked to still be executable.
_found: dict[tuple[tuple[Mount, ...], str, str, str], tuple[str, str]] = {}


def with_command_checked(plan: SandboxPlan) -> SandboxPlan:
    """`plan` with its executable found; refuses, before anything is spawned,
    a command the sandbox could not execute."""
    key = (plan.mounts, plan.env_dict.get("PATH", DEFAULT_PATH), plan.cwd, plan.argv[0])
    found = _found.get(key)
    if found is None or not is_executable_file(found[1]):
        found = plan.find_executable(plan.argv[0])
        if found is not None:
            if len(_found) >= 256:
                _found.clear()
            _found[key] = found
    if found is None:
        check_command(plan)  # raises, naming why
        raise CommandNotFound(f"command {plan.argv[0]!r} is not executable inside the sandbox")
    return attrs.evolve(plan, executable=found)


def check_command(plan: SandboxPlan) -> None:
    """Refuse, before anything is spawned, a command the sandbox could not execute."""
    name = plan.argv[0]
    if plan.find_executable(name) is not None:
        return
    if "/" in name:
        visible = plan.host_path(os.path.normpath(name if name.startswith("/") else os.path.join(plan.cwd, name)))
        if visible is not None:
            kind = "a directory" if os.path.isdir(visible) else "not executable"
            raise CommandNotExecutable(f"command {name} is {kind} inside the sandbox")
    host = name if "/" in name else shutil.which(name)
    if host is None or not os.path.exists(host):
        raise CommandNotFound(f"command {name!r} not found (neither inside the sandbox nor on the host)")
    host = os.path.abspath(host)
    real = os.path.realpath(host)
    hint = f"FsRead({os.path.dirname(real)!r}) (CLI: --read {os.path.dirname(real)})"
    if any(is_within(real, p) or is_within(host, p) for p in python_paths()):
        hint = "policy.with_python(), which adds FsRead of " + ", ".join(python_paths())
    if not stat.S_ISREG(os.stat(real).st_mode) or not os.access(real, os.X_OK):
        raise CommandNotExecutable(f"command {host} is not an executable file")
    raise CommandNotFound(f"executable {host} is not visible inside the sandbox; expose it with {hint}")
