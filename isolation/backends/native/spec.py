"""The C description of a plan's sandboxes (`struct iso_config`), built once per plan.

Two parts with one name each:

- `Shape`: the sandbox without its command (namespaces, ids, mounts, Landlock
  rules, hostname, the seccomp program: isolation-init runs under it already).
  Plans whose sandboxes look alike share one Shape object, which is also what
  a prepared sandbox is built from and kept under.
- `Spec`: a Shape plus the command (argv, environment, executable, working
  directory) and its rlimits, and the claims a run makes.
  A run copies its `iso_config`, adds its descriptors and starts it.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import attrs

from isolation import landlock
from isolation._native import ffi, lib
from isolation.backends.base import Stdio
from isolation.backends.native import message
from isolation.backends.native.host import HostFeatures, cap_last_cap
from isolation.backends.native.layout import Layout
from isolation.plan import Identities, Mount, SandboxPlan
from isolation.rlimits import sandbox_limits
from isolation.seccomp import compile_profile

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


class _Buffers:
    """cffi buffers a C description points into; alive as long as their owner."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def text(self, s: str | bytes) -> Any:
        buf = ffi.new("char[]", s.encode() if isinstance(s, str) else s)
        self.kept.append(buf)
        return buf

    def strs(self, items: list[str]) -> Any:
        arr = ffi.new("char *[]", [self.text(x) for x in items] + [ffi.NULL])
        self.kept.append(arr)
        return arr


@attrs.frozen(eq=False)  # one object per look (cached): compared and hashed by identity
class Shape:
    """A sandbox without its command, as C builds it; read-only for C, shared by runs."""

    flags: int
    uid: int
    gid: int
    sources: Identities | None  # what the bind sources were when the shape was described
    mounts: tuple[Mount, ...]
    ruleset: landlock.Ruleset | None
    bpf: bytes  # the seccomp program, b"" for none
    buffers: _Buffers
    c_hostname: Any
    c_mounts: Any
    c_rules: Any
    c_bpf: Any

    @property
    def preparable(self) -> bool:
        """Whether a sandbox of this shape can be built ahead of its command (an
        isolation-init of its own waits for it): pid and mount namespaces."""
        return bool(self.flags & lib.ISO_F_PIDNS and self.flags & lib.ISO_F_MOUNTNS)

    def fill(self, cfg: Any) -> None:
        """Write this shape into `cfg` (everything but the command and the descriptors)."""
        cfg.flags = self.flags
        cfg.uid_inside, cfg.gid_inside = self.uid, self.gid
        cfg.uid_outside, cfg.gid_outside = os.geteuid(), os.getegid()
        cfg.control_fd = -1
        cfg.cgroup_procs_fd = -1
        cfg.init_fd = -1
        cfg.stdio = [-1, -1, -1]
        cfg.hostname = self.c_hostname
        cfg.mounts = self.c_mounts
        cfg.n_mounts = len(self.mounts)
        if self.ruleset is not None:
            rs = self.ruleset
            cfg.landlock_attr_size = rs.attr_size
            cfg.landlock_fs = rs.fs
            cfg.landlock_file_rights = landlock.FILE_RIGHTS
            cfg.landlock_net = rs.net
            cfg.landlock_scoped = rs.scoped
            cfg.landlock_port = rs.net_port
            cfg.rules = self.c_rules
            cfg.n_rules = len(rs.rules)
        cfg.cap_last_cap = cap_last_cap()
        if self.bpf:
            cfg.bpf = self.c_bpf
            cfg.bpf_len = len(self.bpf) // 8


@functools.lru_cache(maxsize=32)
def shape_of(
    flags: int,
    mounts: tuple[Mount, ...],
    ruleset: landlock.Ruleset | None,
    hostname: str,
    ids: tuple[int, int, int, int],
    sources: Identities | None,
    bpf: bytes,
) -> Shape:
    """The one Shape for sandboxes that look alike. `ids`: inside and the caller's
    (uid, gid, euid, egid); the caller's are part of the key only, as they are mapped.
    `sources`: a bind source replaced since is another shape (a sandbox prepared for
    the old file is never used for the new one). `bpf`: the seccomp program (b"": none),
    which isolation-init is built under: sandboxes with another filter never share one."""
    buf = _Buffers()
    arr = ffi.new("struct iso_mount[]", max(len(mounts), 1))
    buf.kept.append(arr)
    for i, m in enumerate(mounts):
        arr[i].kind = _KIND[m.kind]
        arr[i].target = buf.text(m.target)
        if m.source is not None:  # bind sources are opened by the child, following symlinks as open(2) does
            arr[i].source = buf.text(m.source)
        if m.data is not None:
            arr[i].data = buf.text(m.data)
            arr[i].data_len = len(m.data)
        arr[i].size = m.size or 0  # C refuses a tmpfs without a bound
        arr[i].max_ptys = m.ptys or 0
    rules = ffi.NULL
    if ruleset is not None:
        flags |= lib.ISO_F_LANDLOCK
        rules = ffi.new("struct iso_rule[]", max(len(ruleset.rules), 1))
        buf.kept.append(rules)
        for i, r in enumerate(ruleset.rules):
            rules[i].path = buf.text(r.path)
            rules[i].access = r.access
    c_bpf = ffi.NULL
    if bpf:
        flags |= lib.ISO_F_SECCOMP
        c_bpf = buf.text(bpf)
    return Shape(flags, ids[0], ids[1], sources, mounts, ruleset, bpf, buf, buf.text(hostname), arr, rules, c_bpf)


@attrs.frozen(eq=False)
class Spec:
    """Everything a run of one plan needs but its descriptors: cached per plan, so
    a run only copies `cfg`, adds its stdio and starts."""

    shape: Shape
    layout: Layout
    cfg: Any  # struct iso_config *: all but the descriptors; copied per run
    buffers: _Buffers
    enforced: tuple[str, ...]
    missing: tuple[str, ...]
    max_pids: int | None
    pids_parent: str | None  # a root caller's cgroup v1 pids hierarchy (see rlimits.sandbox_limits)
    payload: bytes  # the command as init receives it (message.py); b"" without a pid namespace

    def config_for(self, stdio: Stdio) -> Any:
        """This run's own `iso_config` (runs of one plan may overlap)."""
        cfg = ffi.new("struct iso_config *", self.cfg[0])
        cfg.stdio = [stdio.stdin, stdio.stdout, stdio.stderr]
        return cfg


def spec_of(plan: SandboxPlan, host: HostFeatures, layout: Layout, missing: tuple[str, ...]) -> Spec:
    buf = _Buffers()
    seccomp = plan.seccomp if plan.seccomp is not None and host.seccomp else None
    if seccomp is not None and not host.userns:  # the host layout's own rules (see seccomp_profile)
        seccomp = compile_profile(seccomp.profile, host_layout=True, network=plan.network)
    ids = (plan.uid, plan.gid, os.geteuid(), os.getegid())
    bpf = seccomp.bpf if seccomp is not None else b""
    shape = shape_of(layout.flags, layout.mounts, layout.ruleset, plan.hostname, ids, plan.source_identities(), bpf)
    cfg = ffi.new("struct iso_config *")
    shape.fill(cfg)
    flags = shape.flags
    enforced = list(layout.enforced)
    cfg.argv = buf.strs(list(plan.argv))
    cfg.envp = buf.strs([f"{k}={v}" for k, v in layout.env])
    cfg.exe = buf.text(layout.exe)
    cfg.cwd = buf.text(layout.cwd)
    if layout.ruleset is not None:
        enforced.append(layout.ruleset.claim())
        if layout.ruleset.net and layout.ruleset.net_port:
            enforced.append(f"landlock:net:connect={layout.ruleset.net_port}")
    if seccomp is not None:
        enforced.append(f"seccomp:{seccomp.profile}:sha256={seccomp.digest}")

    mechanisms = sandbox_limits(plan.policy.limits)
    settings = mechanisms.rlimits
    rl = ffi.new("struct iso_rlimit[]", max(len(settings), 1))
    buf.kept.append(rl)
    for i, st in enumerate(settings):
        # The sandbox's own init counts against RLIMIT_NPROC too: allow for it.
        extra = 1 if st.name == "max_pids" and flags & lib.ISO_F_PIDNS else 0
        rl[i].resource, rl[i].soft, rl[i].hard = st.resource, st.soft + extra, st.hard + extra
        enforced.append(st.claim)
    cfg.rlimits = rl
    cfg.n_rlimits = len(settings)
    cfg.flags = flags
    payload = message.pack(cfg) if shape.preparable else b""
    return Spec(
        shape,
        layout,
        cfg,
        buf,
        tuple(enforced),
        missing,
        plan.policy.limits.max_pids,
        mechanisms.pids_cgroup_parent,
        payload,
    )

