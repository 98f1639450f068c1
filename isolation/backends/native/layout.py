"""What a native sandbox looks like for one plan on this host: its layout.

Two rungs of the degradation ladder: with user namespaces, the plan's own
minimal root in fresh namespaces (`namespaced`); without them, best effort
on the host's tree with Landlock deciding what the command may touch
(`on_host`). Either way the claims are made here, from what will be built.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import attrs

from isolation import landlock
from isolation._native import lib
from isolation.backends.native.host import NAMESPACES, HostFeatures, simulated
from isolation.errors import IsolationUnavailable, PolicyError, SandboxSetupError
from isolation.plan import WORK_DIR, Mount, SandboxPlan, tmpfs_bound


@attrs.frozen
class Layout:
    """What C is asked to build: mounts, Landlock rules, and where the command starts."""

    flags: int
    mounts: tuple[Mount, ...]
    ruleset: landlock.Ruleset | None
    exe: str
    cwd: str
    env: tuple[tuple[str, str], ...]
    enforced: tuple[str, ...]
    missing: tuple[str, ...] = ()
    private_dir: str | None = None  # the host layout's /work and /tmp, removed after the run

    def cleanup(self) -> None:
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)


def executable(plan: SandboxPlan) -> tuple[str, str]:
    exe = plan.executable or plan.find_executable(plan.argv[0])
    if exe is None:  # build_plan checked already; the host may have changed since
        raise PolicyError(f"{plan.argv[0]} is not executable inside the sandbox")
    return exe


def namespaced(plan: SandboxPlan, host: HostFeatures) -> Layout:
    flags = lib.ISO_F_CAPS
    enforced: list[str] = []
    for name, bit in NAMESPACES:
        if name == "net" and plan.network:
            continue
        flags |= bit
        enforced.append(f"namespace:{name}")
    enforced += ["rootfs:minimal", "ids:65534", "capabilities:none", "no_new_privs", "new_session"]
    enforced += ["fds:closed", "env:cleared", "pid1:init"]
    enforced += mount_bounds(plan.mounts)
    ruleset = None
    if host.landlock_abi >= 1:
        sim = simulated()
        unlisted = sim.landlock_unlisted if sim is not None else frozenset()
        ruleset = landlock.ruleset_for(plan, host.landlock_abi, unlisted=unlisted)
    return Layout(flags, plan.mounts, ruleset, executable(plan)[0], plan.cwd, plan.env, tuple(enforced))


def mount_bounds(mounts: tuple[Mount, ...]) -> list[str]:
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
HOST_LAYOUT_SECCOMP = ["files:metadata", "sockets:unix"]


def on_host(plan: SandboxPlan, host: HostFeatures) -> Layout:
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
    private = tempfile.mkdtemp(prefix="isolation-")
    os.chmod(private, 0o700)
    work, tmp = os.path.join(private, "work"), os.path.join(private, "tmp")
    os.mkdir(work)
    os.mkdir(tmp)
    try:
        if root:  # the command's own: it runs as plan.uid
            for d in (private, work, tmp):
                try:
                    os.chown(d, plan.uid, plan.gid)
                except OSError as exc:
                    raise SandboxSetupError.from_oserror(
                        exc, f"cannot give {d} to uid {plan.uid}, the user a root caller's command runs as "
                        "without user namespaces", step="chown", path=d,
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
        _, host_exe = executable(plan)
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
        return Layout(flags, (), ruleset, host_exe, cwd, tuple(env.items()), tuple(enforced), tuple(missing), private)
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise
