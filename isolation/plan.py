"""`SandboxPlan`: the backend-neutral, fully resolved description of one sandbox.

Both backends build exactly this plan: the same mounts in the same order, the
same environment, the same seccomp filter. `isolation plan` prints it.
"""

from __future__ import annotations

import contextvars
import functools
import os
import shutil
import stat
import sys
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from isolation import sysview
from isolation.errors import CommandNotExecutable, CommandNotFound, CommandNotVisible, PolicyError
from isolation.paths import is_executable_file, is_within, normalize_path
from isolation.policy import Bind, IsolationPolicy, python_paths
from isolation.seccomp import SeccompFilter, compile_filter

MountKind = Literal["ro-bind", "rw-bind", "tmpfs", "proc", "proc-ro", "dev", "device", "symlink", "file", "mask"]

# The kinds that are parts of the fresh file system just before them, built into it.
PART_OF: Mapping[str, str] = {"proc-ro": "proc", "device": "dev"}

Identities = tuple[tuple[str, int, int], ...]

# The kinds that bind a host path (`source`) into the sandbox.
BIND_KINDS = frozenset({"ro-bind", "rw-bind", "device"})

SANDBOX_UID = 65534
SANDBOX_GID = 65534
WORK_DIR = "/work"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Who reads the hints of a refusal: API callers are told the policy call, CLI users the flag.
HINT_STYLE: contextvars.ContextVar[Literal["api", "cli"]] = contextvars.ContextVar("hint_style", default="api")

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

    Parts, which directly follow the `proc` or `dev` they belong to (`PART_OF`)
    and are built into it: `proc-ro`: the entry `target` of that fresh /proc made
    read-only, skipped when the kernel has none (`sysview.PROC_READ_ONLY`);
    `device`: the host's device node `source` bound at `target` in that /dev,
    read-only and usable (`sysview.DEV_NODES`), before the /dev is made read-only.

    `size`: the byte bound of a `tmpfs` (of a `dev`'s /dev/shm): tmpfs pages
    count against no rlimit, so each writable tmpfs is bounded (`Limits.tmpfs_bytes`).
    `ptys`: how many ptys a `dev`'s own devpts instance may hold (0: no devpts).
    """

    kind: MountKind
    target: str
    source: str | None = None
    data: bytes | None = None
    origin: str = "system"  # "system", "network", "policy", "work", "sandbox": why this mount exists
    size: int | None = None
    ptys: int | None = None

    @property
    def writable(self) -> bool:
        return self.kind in ("rw-bind", "tmpfs", "proc", "dev")  # "mask", "proc-ro", "device": read-only


@attrs.frozen(cache_hash=True)
class Program:
    """The file argv[0] names, resolved as the caller's shell would (the caller's PATH).

    `host`: that host file; found on the caller's PATH, its path as found, symlinks
    kept (a venv's interpreter finds its venv through it); named by a path, the file
    that path leads to. `sandbox`: where the sandbox shows that very
    entry, executed there. `found_by`: ``caller PATH``, ``path`` (argv[0] has a
    slash: a sandbox path) or ``sandbox PATH`` (the caller's PATH has no such
    name). `path_added`: a directory put first in the sandbox's PATH because its
    PATH would otherwise have found another file (or none) under that name.
    """

    name: str
    host: str
    sandbox: str
    found_by: str
    path_added: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": self.host,
            "sandbox": self.sandbox,
            "found_by": self.found_by,
            "path_added": self.path_added,
        }


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
    program: Program | None = None

    def bind_sources(self) -> tuple[str, ...]:
        """The host paths bound into the sandbox (policy binds and the system view)."""
        return tuple(m.source for m in self.mounts if m.kind in BIND_KINDS and m.source is not None)

    def source_identities(self) -> Identities | None:
        """What each bind source is now, as (path, st_dev, st_ino); None when one is missing.
        A sandbox built for these binds these files: one replaced since (an /etc file
        rewritten by rename, a directory moved away) is another file at the same path."""
        found = []
        for source in self.bind_sources():
            try:
                st = os.stat(source)
            except OSError:
                return None
            found.append((source, st.st_dev, st.st_ino))
        return tuple(found)

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def secret_like_denied(self) -> tuple[str, ...]:
        return tuple(n for n in self.env_denied if any(h in n.upper() for h in SECRET_HINTS))

    def to_dict(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "program": None if self.program is None else self.program.to_dict(),
            "mounts": [
                {
                    "kind": m.kind,
                    "target": m.target,
                    "source": m.source,
                    "mode": "rw" if m.writable else "ro",
                    "origin": m.origin,
                    **({"size": m.size} if m.size is not None else {}),
                    **({"ptys": m.ptys} if m.ptys is not None else {}),
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

    def sandbox_path_of(self, host: str) -> str | None:
        """A sandbox path that shows the host entry `host` itself (the same directory
        entry, so a symlink stays that symlink), or None when none does. Its own path
        first, then through each bind whose source holds it (the latest bind wins)."""
        host = os.path.abspath(host)
        parent = os.path.dirname(host)
        candidates = {host: False}  # sandbox path: whether it is a bind's own target
        for m in reversed(self.mounts):
            if m.kind in ("ro-bind", "rw-bind") and m.source is not None and is_within(host, m.source):
                rel = os.path.relpath(host, m.source)
                if rel == ".":
                    candidates[m.target] = True
                else:
                    candidates.setdefault(os.path.join(m.target, rel), False)
        for c, is_target in candidates.items():
            if c == "/" or host == "/":
                continue
            if not is_target and os.path.dirname(c) != "/":
                if os.path.basename(c) != os.path.basename(host):
                    continue
                inside_parent = self.host_path(os.path.dirname(c))
                try:
                    if inside_parent is None or not os.path.samefile(inside_parent, parent):
                        continue
                except OSError:
                    continue
            shown = self.host_path(c)
            try:
                if shown is not None and os.path.samefile(shown, host):
                    return c
            except OSError:
                continue
        return None

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


def writer_uid(rung: str | None = "namespaces", *, euid: int | None = None) -> int:
    """The host uid a sandbox's writes are checked against: the caller's own uid
    (a root caller's sandbox user is host uid 0, without capabilities), except in
    the native backend's host layout, where a root caller's command runs as 65534."""
    euid = os.geteuid() if euid is None else euid
    return SANDBOX_UID if euid == 0 and rung == "host" else euid


def owner_warnings(plan: SandboxPlan, writer: int) -> list[str]:
    """One line per writable bind the sandbox cannot write to because another uid owns it
    (and it is not writable by everyone): inside it shows as 65534 and writes fail."""
    out: list[str] = []
    for m in plan.mounts:
        if m.kind != "rw-bind" or m.source is None:
            continue
        try:
            st = os.stat(m.source)
        except OSError:
            continue
        if st.st_uid == writer or st.st_mode & stat.S_IWOTH:
            continue
        out.append(
            f"writable bind {m.target} ({m.source}) is owned by uid {st.st_uid}, but the sandbox writes as "
            f"host uid {writer}: inside it shows as owned by {SANDBOX_UID} and writes fail with 'Permission "
            f"denied'; give it to the sandbox's user first (chown -R {writer} {m.source}) or copy it"
        )
    return out


@functools.lru_cache(maxsize=64)  # rendered on every bwrap run; a plan's mounts are immutable
def with_parts(mounts: tuple[Mount, ...]) -> tuple[tuple[Mount, tuple[Mount, ...]], ...]:
    """Each mount of `mounts` but the parts, with the parts that follow it (see `Mount`):
    what a backend builds in one go. A part anywhere else is refused (AssertionError)."""
    out: list[tuple[Mount, list[Mount]]] = []
    for m in mounts:
        parent = PART_OF.get(m.kind)
        if parent is None:
            out.append((m, []))
        elif not out or out[-1][0].kind != parent or any(p.kind != m.kind for p in out[-1][1]):
            raise AssertionError(f"{m.kind} {m.target} does not follow a {parent}")
        elif os.path.dirname(m.target) != out[-1][0].target:
            raise AssertionError(f"{m.kind} {m.target} is not an entry of {parent} {out[-1][0].target}")
        else:
            out[-1][1].append(m)
    return tuple((m, tuple(parts)) for m, parts in out)


def tmpfs_bound(mounts: Sequence[Mount]) -> int | None:
    """The byte bound every writable tmpfs of `mounts` carries (/tmp, a tmpfs /work,
    a `dev`'s /dev/shm); None when there is none, or not one shared bound."""
    sizes = {m.size for m in mounts if m.kind in ("tmpfs", "dev")}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


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
    cwd: str | None = None,
) -> SandboxPlan:
    """Resolve `policy` for `argv` on this host. Raises PolicyError before anything runs.

    `cwd`: the working directory, a sandbox path that must be visible (default /work).
    argv[0] without a slash is resolved on `environ`'s PATH, as the caller's shell would:
    that very file runs, or CommandNotVisible names the change that makes it run."""
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
    if cwd is not None:
        plan = with_cwd(plan, cwd)
    if check_executable:
        plan = with_command_checked(plan, environ)
    return plan


def with_cwd(plan: SandboxPlan, cwd: str) -> SandboxPlan:
    """`plan` working in the sandbox directory `cwd`; refused unless it is a visible directory."""
    cwd = normalize_path(cwd, what="cwd")
    if cwd != plan.cwd:
        host = plan.host_path(cwd)
        if host is None or not os.path.isdir(host):
            what = "not visible" if host is None else "not a directory"
            if HINT_STYLE.get() == "cli":
                fix = f"--read {cwd} or --write {cwd}"
            else:
                fix = f"FsRead({cwd!r}) or FsWrite({cwd!r}) (a host directory at that path)"
            raise PolicyError(f"cwd {cwd} is {what} inside the sandbox; bind it with {fix}")
    return attrs.evolve(plan, cwd=cwd)


@functools.lru_cache(maxsize=64)
def policy_mounts(policy: IsolationPolicy) -> tuple[Mount, ...]:
    """The mounts `policy` asks for, in plan order (cached: a policy is immutable,
    and the system view is resolved once per process)."""
    size, ptys = policy.limits.tmpfs_bytes(), policy.limits.max_ptys
    mounts = _system_mounts(policy.network)
    mounts.append(Mount("proc", "/proc", origin="sandbox"))
    mounts += [Mount("proc-ro", f"/proc/{name}", origin="sandbox") for name in sysview.PROC_READ_ONLY]
    mounts += [Mount("mask", path, origin="sandbox") for path in sysview.proc_masks(policy.network)]
    mounts.append(Mount("dev", "/dev", origin="sandbox", size=size, ptys=ptys))
    mounts += [Mount("device", f"/dev/{n}", source=f"/dev/{n}", origin="sandbox") for n in sysview.DEV_NODES]
    mounts.append(Mount("tmpfs", "/tmp", origin="sandbox", size=size))
    if policy.work_host is None:
        mounts.append(Mount("tmpfs", WORK_DIR, origin="work", size=size))
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


def with_command_checked(plan: SandboxPlan, environ: Mapping[str, str] | None = None) -> SandboxPlan:
    """`plan` with its program resolved (see `Program`); refuses, before anything is
    spawned, a command the sandbox could not execute, naming the change that fixes it."""
    environ = os.environ if environ is None else environ
    name = plan.argv[0]
    caller_path = None if "/" in name else environ.get("PATH", os.defpath)
    sandbox_path = plan.env_dict.get("PATH", DEFAULT_PATH)
    program, host_exe = _resolve_program(plan, caller_path)
    if program.path_added is not None:
        env = {**plan.env_dict, "PATH": f"{program.path_added}:{sandbox_path}"}
        plan = attrs.evolve(plan, env=tuple(env.items()))
    return attrs.evolve(plan, executable=(program.sandbox, host_exe), program=program)


def program_still_found(plan: SandboxPlan, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the caller's PATH still finds the file `plan` runs for its bare name (a
    cached plan must not run one file after the caller's PATH started finding another)."""
    return plan.program is None or _found_again(plan.program, os.environ if environ is None else environ)


def _found_again(prog: Program, environ: Mapping[str, str]) -> bool:
    if prog.found_by == "path":
        return True
    found = shutil.which(prog.name, path=environ.get("PATH", os.defpath))
    if prog.found_by == "sandbox PATH":
        return found is None
    return found is not None and os.path.abspath(found) == prog.host


def _resolve_program(plan: SandboxPlan, caller_path: str | None) -> tuple[Program, str]:
    name = plan.argv[0]
    if caller_path is not None:
        found = shutil.which(name, path=caller_path)
        if found is not None:
            host = os.path.abspath(found)
            inside = plan.sandbox_path_of(host)
            if inside is None:
                raise CommandNotVisible(_not_visible(plan, name, host))
            shown = plan.host_path(inside)
            if shown is None or not is_executable_file(shown):
                raise CommandNotExecutable(f"command {name} ({host}) is not executable inside the sandbox")
            by_sandbox = plan.find_executable(name)
            added = None
            if by_sandbox is None or not _same_entry(plan, by_sandbox[0], inside):
                added = os.path.dirname(inside)  # the sandbox's PATH would pick another file (or none)
            return Program(name, host, inside, "caller PATH", added), shown
    found_inside = plan.find_executable(name)
    if found_inside is None:
        check_command(plan)  # raises, naming why
        raise CommandNotFound(f"command {name!r} is not executable inside the sandbox")
    sandbox, host = found_inside
    by = "path" if "/" in name else "sandbox PATH"
    return Program(name, host, os.path.normpath(sandbox), by), host


def _same_entry(plan: SandboxPlan, a: str, b: str) -> bool:
    """Whether sandbox paths `a` and `b` name the same directory entry (e.g. /bin/x and
    /usr/bin/x on a merged-/usr system), not merely files that end at the same inode."""
    a, b = os.path.normpath(a), os.path.normpath(b)
    if a == b:
        return True
    if os.path.basename(a) != os.path.basename(b):
        return False
    da, db = plan.host_path(os.path.dirname(a)), plan.host_path(os.path.dirname(b))
    try:
        return da is not None and db is not None and os.path.samefile(da, db)
    except OSError:
        return False


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
    if not stat.S_ISREG(os.stat(real).st_mode) or not os.access(real, os.X_OK):
        raise CommandNotExecutable(f"command {host} is not an executable file")
    raise CommandNotVisible(_not_visible(plan, name, host))


# -- hints: each names a change that, applied, makes the program visible -----------------


def _fix_text(binds: Sequence[Bind], *, ro: bool = True, python: bool = False) -> str:
    """The change `binds` (plus `python`: the running interpreter) in the caller's terms."""
    if HINT_STYLE.get() == "cli":
        flags = (["--python"] if python else []) + [f"--{'read' if ro else 'write'} {b.host}" for b in binds]
        return " ".join(flags)
    calls = (["with_python()"] if python else []) + [
        f"{'FsRead' if ro else 'FsWrite'}({b.host!r})" if not python else f"with_read({b.host!r})" for b in binds
    ]
    if python:
        return "policy." + ".".join(calls)
    return ", ".join(calls) + (" (effects), or policy.with_read(...)" if ro else " (effects)")


def _chain(host: str) -> list[str]:
    """`host` and each path its symlinks lead through, in order (at most 40 hops)."""
    hops = [host]
    cur = host
    for _ in range(40):
        if not os.path.islink(cur):
            break
        cur = os.path.normpath(os.path.join(os.path.dirname(cur), os.readlink(cur)))
        hops.append(cur)
    return hops


def _python_prefix(path: str) -> str | None:
    """The installation prefix of a Python interpreter at `path` (a real file), if it looks like one:
    it needs its standard library (prefix/lib/pythonX.Y) and maybe libpython beside it."""
    if not os.path.basename(path).startswith("python"):
        return None
    prefix = os.path.dirname(os.path.dirname(path))
    lib = os.path.join(prefix, "lib")
    try:
        if any(n.startswith("python") for n in os.listdir(lib)):
            return prefix
    except OSError:
        pass
    return None


def _candidate_fixes(host: str) -> list[tuple[list[Bind], bool]]:
    """Changes to try, most specific first: (binds, with the running Python)."""
    out: list[tuple[list[Bind], bool]] = []
    chain = _chain(host)
    if any(any(is_within(h, p) for p in python_paths()) for h in chain):
        out.append(([], True))
    dirs: list[str] = []
    for i, hop in enumerate(chain):
        d = os.path.dirname(hop)
        venv = os.path.dirname(d)
        if i == 0 and os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            d = venv  # a venv's interpreter finds its venv through ../pyvenv.cfg
        prefix = _python_prefix(hop) if i == len(chain) - 1 else None
        dirs.append(prefix or d)
    needed = [d for d in dict.fromkeys(dirs) if not any(d != o and is_within(d, o) for o in dirs)]
    out.append(([Bind.same(d) for d in needed], False))
    return out


def _not_visible(plan: SandboxPlan, name: str, host: str) -> str:
    """Why `host` (what `name` runs for the caller) cannot run inside, and the change that fixes it."""
    what = f"{host} is not visible inside the sandbox"
    if "/" not in name:
        what = f"command {name}: {what} (your PATH runs it for {name})"
    by_sandbox = plan.find_executable(name) if "/" not in name else None
    other = f"; the sandbox's PATH would run {by_sandbox[0]}, another program" if by_sandbox else ""
    if os.path.basename(os.path.dirname(host)) == "shims":  # pyenv, rbenv, asdf: picks a program at run time
        cli = HINT_STYLE.get() == "cli"
        real = f"--python -- {sys.executable}" if cli else f"policy.with_python() and {sys.executable}"
        alt = f" (the Python running isolation: {real})" if name.startswith("python") else ""
        return (
            f"{what}{other}: it is a version manager's shim, which picks the program when it runs; "
            f"name the program it picks by its absolute path instead, made visible{alt}"
        )
    for binds, python in _candidate_fixes(host):
        policy = plan.policy.with_python() if python else plan.policy
        policy = policy.with_read(*(b.host for b in binds if plan.sandbox_path_of(b.host) is None)) if binds else policy
        if policy == plan.policy:
            continue
        trial = attrs.evolve(plan, mounts=policy_mounts(policy), policy=policy)
        if trial.sandbox_path_of(host) is not None:
            needed = [b for b in binds if plan.sandbox_path_of(b.host) is None]
            fix = _fix_text(needed, python=python)
            return f"{what}{other}; make it visible with {fix}"
    return f"{what}{other}; bind the directories it needs read-only"
