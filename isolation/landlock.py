"""Landlock: what each ABI can restrict, and the ruleset that mirrors a plan's mounts.

Compatibility model (stated, not accidental). The native backend asks the
kernel for its ABI and handles every access right that ABI knows, so nothing
the kernel could restrict is left open. Rights an older ABI lacks are listed
in `RunResult.missing` as ``landlock:<feature>``. Whether a missing feature
makes a strict run refuse depends on whether another layer already covers it:

==========  ===  ==================================  ==================================
feature     ABI  what it restricts                   strict run without it
==========  ===  ==================================  ==================================
fs          1    file and directory access           refused (Landlock is a layer we claim)
refer       2    rename/link across directories      runs: ABI 1 denies them outright
truncate    3    truncate(2) and O_TRUNC             runs: read-only mounts cover it
net         4    TCP bind and connect                runs: the network namespace covers it
ioctl_dev   5    ioctl on device files               runs: the seccomp filter covers TIOCSTI
scope       6    abstract unix sockets and signals   refused when the policy shares the
                 leaving the sandbox                 host network (nothing else covers it)
(logging)   7    audit logging flags only            runs
==========  ===  ==================================  ==================================
"""

from __future__ import annotations

import functools

import attrs

from isolation.egress_rules import PROXY_PORT
from isolation.plan import Mount, SandboxPlan

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13
TRUNCATE = 1 << 14
IOCTL_DEV = 1 << 15

NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

# Access rights each ABI handles (cumulative).
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FEATURE_ABI = {"fs": 1, "refer": 2, "truncate": 3, "net": 4, "ioctl_dev": 5, "scope": 6}
NEWEST_ABI = 7

# The rights a rule may grant on a non-directory (the kernel refuses the others there);
# the native backend passes this mask to its C rather than the C keeping a copy.
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ = EXECUTE | READ_FILE | READ_DIR
DEVICES = READ_FILE | WRITE_FILE | READ_DIR | IOCTL_DEV
PROC = READ_FILE | WRITE_FILE | READ_DIR
# The host's own /proc (the host layout): readable, nothing writable (/proc/sys is the host's).
HOST_PROC = READ_FILE | READ_DIR
# Writable trees: everything but creating device nodes.
WRITE = ((1 << 16) - 1) & ~(MAKE_CHAR | MAKE_BLOCK)

@functools.cache
def kernel_abi() -> int:
    """The running kernel's Landlock ABI; 0 when Landlock is absent or disabled."""
    from isolation.userns import landlock_status  # the probe (late: userns reads the host)

    return landlock_status()[0]


def handled_fs(abi: int) -> int:
    best = 0
    for level, mask in _FS_BY_ABI.items():
        if abi >= level:
            best = mask
    return best


def features(abi: int) -> tuple[str, ...]:
    return tuple(name for name, level in FEATURE_ABI.items() if abi >= level)


@attrs.frozen(cache_hash=True)
class Rule:
    path: str  # inside the sandbox
    access: int


@attrs.frozen(cache_hash=True)
class Ruleset:
    abi: int
    fs: int
    net: int
    scoped: int
    rules: tuple[Rule, ...]
    net_port: int = 0  # > 0: the TCP port bind and connect stay allowed on (the egress proxy's, inside)

    @property
    def attr_size(self) -> int:
        """How much of `struct landlock_ruleset_attr` this ABI reads."""
        return 8 if self.abi < 4 else 16 if self.abi < 6 else 24

    def claim(self) -> str:
        """The `RunResult.enforced` entry, e.g. ``landlock:abi=7:fs,net,scope``."""
        parts = ["fs"]
        if self.net:
            parts.append("net")
        if self.scoped:
            parts.append("scope")
        return f"landlock:abi={self.abi}:{','.join(parts)}"

    def describe(self) -> list[dict[str, object]]:
        return [{"path": r.path, "access": access_names(r.access & self.fs)} for r in self.rules]


_NAMES = {
    EXECUTE: "execute",
    WRITE_FILE: "write_file",
    READ_FILE: "read_file",
    READ_DIR: "read_dir",
    REMOVE_DIR: "remove_dir",
    REMOVE_FILE: "remove_file",
    MAKE_CHAR: "make_char",
    MAKE_DIR: "make_dir",
    MAKE_REG: "make_reg",
    MAKE_SOCK: "make_sock",
    MAKE_FIFO: "make_fifo",
    MAKE_BLOCK: "make_block",
    MAKE_SYM: "make_sym",
    REFER: "refer",
    TRUNCATE: "truncate",
    IOCTL_DEV: "ioctl_dev",
}


def access_names(mask: int) -> list[str]:
    return [name for bit, name in _NAMES.items() if mask & bit]


def ruleset_for(plan: SandboxPlan, abi: int, *, unlisted: frozenset[str] = frozenset()) -> Ruleset:
    """Rules mirroring the plan's mounts: read-only where mounted read-only,
    writable where mounted writable, nothing elsewhere.

    `unlisted` drops rules for those sandbox paths: an internal hook the tests
    use to show that Landlock, not the mount table, denies them.
    """
    rs = _ruleset(plan.mounts, plan.network, abi, unlisted)
    if rs.net and plan.policy.egress_allow:
        rs = attrs.evolve(rs, net_port=PROXY_PORT)
    return rs


@functools.lru_cache(maxsize=64)
def _ruleset(mounts: tuple[Mount, ...], network: bool, abi: int, unlisted: frozenset[str]) -> Ruleset:
    rules: list[Rule] = [Rule("/", READ_DIR)]  # list directories (their files stay governed by the rules below)
    for m in mounts:
        if m.target in unlisted:
            continue
        if m.kind in ("ro-bind", "file"):
            rules.append(Rule(m.target, READ))
        elif m.kind in ("rw-bind", "tmpfs"):
            rules.append(Rule(m.target, WRITE))
        elif m.kind == "proc":
            rules.append(Rule(m.target, PROC))
        elif m.kind == "dev":
            rules.append(Rule(m.target, DEVICES))
            rules.append(Rule(m.target.rstrip("/") + "/shm", WRITE))
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 and not network else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    return Ruleset(abi=abi, fs=handled_fs(abi), net=net, scoped=scoped, rules=tuple(rules))


def missing_features(abi: int, *, network: bool) -> tuple[list[str], list[str]]:
    """(missing, of which a strict run must refuse) for this ABI and policy."""
    missing = [f"landlock:{name}" for name, level in FEATURE_ABI.items() if abi < level]
    required = [m for m in missing if m == "landlock:fs" or (m == "landlock:scope" and network)]
    return missing, required
