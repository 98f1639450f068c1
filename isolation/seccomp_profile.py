"""The declarative syscall profile: what the default filter denies, and why.

Pure data, no libseccomp: `isolation.seccomp` compiles it, the docs table and
the tests read it. The filter's default action is ALLOW; each `Rule` below
denies one syscall (optionally only for some argument values) with an errno,
so programs see an ordinary error and degrade gracefully, as under Docker's
default profile. Sources consulted: Docker's default profile, Flatpak's
blocklist (inherited from Sandstorm and linux-user-chroot), Chromium's
baseline policy and nsjail; each entry says why it fits a build/test sandbox.

Named extensions relax the default for stages that need it (see
`EXTENSIONS`); the policy's ``seccomp`` field picks ``default``, ``none`` (only
with ``unsafe_no_seccomp``) or extensions joined by ``+``.
"""

from __future__ import annotations

import errno as E
from collections.abc import Iterable

import attrs

# -- argument conditions ---------------------------------------------------

MASK32 = 0xFFFFFFFF

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# CLONE_NEWTIME shares its bit with clone()'s exit-signal byte (CSIGNAL), so
# clone() cannot request it; only unshare() and clone3() can, and both are denied.
CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": CLONE_NEWNS,
    "CLONE_NEWCGROUP": CLONE_NEWCGROUP,
    "CLONE_NEWUTS": CLONE_NEWUTS,
    "CLONE_NEWIPC": CLONE_NEWIPC,
    "CLONE_NEWUSER": CLONE_NEWUSER,
    "CLONE_NEWPID": CLONE_NEWPID,
    "CLONE_NEWNET": CLONE_NEWNET,
}

TIOCSTI = 0x5412
TIOCLINUX = 0x541C
TIOCSETD = 0x5423

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
ALLOWED_SOCKET_FAMILIES: tuple[int, ...] = (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK)

S_ISUID = 0o4000
S_ISGID = 0o2000
SETID_BITS: dict[str, int] = {"S_ISUID": S_ISUID, "S_ISGID": S_ISGID}
# Which argument carries the mode, per call that can set it on a file.
MODE_ARG: dict[str, int] = {
    "chmod": 1,
    "fchmod": 1,
    "fchmodat": 2,
    "fchmodat2": 2,
    "creat": 1,
    "open": 2,
    "openat": 3,
    "mknod": 1,
    "mknodat": 2,
}

PER_LINUX = 0x0000
PER_LINUX32 = 0x0008
UNAME26 = 0x0020000
PER_QUERY = 0xFFFFFFFF
# Docker's list: the personalities that change nothing security-relevant
# (PER_LINUX, PER_LINUX32 for `linux32`/`setarch`, UNAME26 for old build
# scripts, and the query value). ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and the
# rest weaken the process's own hardening and are refused.
ALLOWED_PERSONALITIES: tuple[int, ...] = (PER_LINUX, PER_LINUX32, UNAME26, UNAME26 | PER_LINUX32, PER_QUERY)


@attrs.frozen
class ArgMatch:
    """Deny when, for any (mask, value) pair, ``arg & mask == value``.

    Only the low 32 bits are ever compared for `int`-typed arguments: the
    kernel truncates them, so a comparison that looked at the high half could
    be bypassed by setting high bits (the CVE-2019-10063 pattern). `above`
    compares all 64 bits: used for pointers, and for ints only where high bits
    can only make it deny more.
    `describe` is the human-readable condition for docs and `isolation plan`.
    """

    arg: int
    pairs: tuple[tuple[int, int], ...]
    describe: str
    above: int | None = None  # also deny when the whole 64-bit argument is greater (unsigned)


def any_flag(arg: int, flags: dict[str, int]) -> ArgMatch:
    """Deny when any of `flags` is set in argument `arg`."""
    return ArgMatch(arg, tuple((bit, bit) for bit in flags.values()), "with " + " or ".join(flags))


def equals32(arg: int, values: dict[str, int]) -> ArgMatch:
    """Deny when the low 32 bits of argument `arg` equal one of `values`."""
    return ArgMatch(arg, tuple((MASK32, v) for v in values.values()), " or ".join(values))


def blocks_outside(allowed: Iterable[int], bits: int = 32) -> tuple[tuple[int, int], ...]:
    """(mask, value) pairs that together match exactly the `bits`-bit values not in `allowed`.

    The complement is split into aligned power-of-two blocks (like CIDR
    prefixes), each one masked comparison; libseccomp cannot express
    "not in a set" with one rule, and one rule may compare an argument once.
    """
    keep = sorted(set(allowed))
    full = (1 << bits) - 1
    out: list[tuple[int, int]] = []

    def cover(lo: int, size: int) -> None:
        hi = lo + size - 1
        if not any(lo <= a <= hi for a in keep):
            out.append((full & ~(size - 1), lo))
        elif size > 1:
            cover(lo, size // 2)
            cover(lo + size // 2, size // 2)

    cover(0, 1 << bits)
    return tuple(out)


def not_in32(arg: int, allowed: dict[str, int]) -> ArgMatch:
    """Deny unless the low 32 bits of argument `arg` are one of `allowed`."""
    return ArgMatch(arg, blocks_outside(allowed.values()), "other than " + ", ".join(allowed))


# -- rules -----------------------------------------------------------------


@attrs.frozen
class Rule:
    """One deny entry: `syscall` answers `errno` (when `when` matches, if given).

    `group` ties the rule to a probe test and a docs section; `reason` is why
    a build/test sandbox has no business making this call.
    """

    syscall: str
    group: str
    reason: str
    errno: int = E.EPERM
    when: ArgMatch | None = None
    also: ArgMatch | None = None  # and this must match too (another argument)

    @property
    def label(self) -> str:
        conds = [m.describe for m in (self.when, self.also) if m is not None]
        return f"{self.syscall}({', '.join(conds)})" if conds else self.syscall


def _deny(group: str, names: Iterable[str], reason: str, errno: int = E.EPERM) -> tuple[Rule, ...]:
    return tuple(Rule(n, group, reason, errno) for n in names)


_MOUNT_API = ("open_tree", "open_tree_attr", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr")

DEFAULT_RULES: tuple[Rule, ...] = (
    # -- namespaces: the sandbox's walls are namespaces; new ones are the
    #    first step of most container escapes and unprivileged kernel exploits
    #    (user namespaces expose netfilter, mount and other CAP_SYS_ADMIN code).
    Rule("unshare", "namespaces", "creates namespaces (a user namespace hands out capabilities over new kernel code)"),
    Rule("setns", "namespaces", "joins another namespace; nothing inside the sandbox should leave its own"),
    Rule(
        "clone",
        "namespaces",
        "clone() with a namespace flag is unshare() by another name; plain fork and threads stay allowed",
        when=any_flag(0, CLONE_NAMESPACE_FLAGS),
    ),
    Rule(
        "clone3",
        "namespaces",
        "its flags live in a struct seccomp cannot read; ENOSYS makes libc fall back to clone(), which is checked",
        E.ENOSYS,
    ),
    # -- mounts: the file system view is the policy; changing it is an escape.
    Rule("mount", "mounts", "would change the sandbox's file system view, which is the policy"),
    Rule("umount2", "mounts", "unmounting could reveal what a mount hides"),
    Rule("pivot_root", "mounts", "swaps the root file system"),
    Rule("chroot", "mounts", "chroot is the classic escape helper; a build never needs it"),
    *_deny("mounts", _MOUNT_API, "the new mount API: same power as mount(2), more new kernel code"),
    # -- kernel attack surface: big, fast-moving subsystems that have given
    #    unprivileged users root repeatedly and that builds and tests do not use.
    Rule("bpf", "kernel", "eBPF verifier and maps: a long line of privilege-escalation bugs"),
    Rule("perf_event_open", "kernel", "perf events: frequent kernel bugs and side channels on other processes"),
    Rule("userfaultfd", "kernel", "turns kernel races into reliable exploits by pausing page faults"),
    *_deny(
        "kernel",
        ("io_uring_setup", "io_uring_enter", "io_uring_register"),
        "io_uring: a large share of recent kernel exploits; libraries fall back to plain syscalls",
    ),
    Rule("lookup_dcookie", "kernel", "oprofile interface, obsolete; reveals kernel paths"),
    Rule("fanotify_init", "kernel", "file-system-wide monitoring; builds use inotify"),
    Rule("modify_ldt", "kernel", "x86 LDT: 16-bit code only, a historic source of kernel bugs and leaks"),
    Rule("uselib", "kernel", "a.out shared libraries, obsolete; had its own privilege-escalation bug"),
    Rule("ustat", "kernel", "obsolete; reports on host file systems by device number"),
    Rule("sysfs", "kernel", "obsolete file-system-type query"),
    Rule("_sysctl", "kernel", "obsolete binary sysctl interface (removed in Linux 5.5)"),
    # -- kernel keyrings are not namespaced: keys may be shared with the host.
    *_deny(
        "keys",
        ("keyctl", "add_key", "request_key"),
        "kernel keyrings are not namespaced; keys could leak between the sandbox and the host",
    ),
    # -- host administration: these act on the whole machine; most need a
    #    capability the sandbox lacks, denying them shrinks the surface anyway.
    *_deny("host", ("kexec_load", "kexec_file_load"), "replaces the running kernel"),
    *_deny("host", ("init_module", "finit_module", "delete_module"), "loads or unloads kernel code"),
    Rule("reboot", "host", "reboots or halts the machine"),
    *_deny("host", ("swapon", "swapoff"), "changes the host's swap"),
    Rule("acct", "host", "switches process accounting for the whole host"),
    Rule("syslog", "host", "reads the kernel log (kernel addresses, other users' activity)"),
    *_deny("host", ("quotactl", "quotactl_fd"), "manages disk quotas of host file systems"),
    Rule("vhangup", "host", "hangs up the controlling terminal"),
    *_deny("host", ("iopl", "ioperm"), "raw I/O port access to hardware"),
    # -- time is one clock for the whole host (time namespaces only offset
    #    monotonic clocks): a sandbox reads it, never sets it.
    *_deny(
        "time",
        ("settimeofday", "clock_settime", "clock_adjtime", "adjtimex"),
        "sets or slews the host clock; read time with clock_gettime",
    ),
    # -- file handles bypass path-based access checks (the 2014 "shocker" escape).
    *_deny(
        "handles",
        ("open_by_handle_at", "name_to_handle_at"),
        "file handles open files by inode, around the mount view (the shocker container escape)",
    ),
    # -- other processes' memory and state: debugging and introspection.
    Rule("ptrace", "process", "debugging other processes: a classic privilege-escalation path (PTRACE_TRACEME bugs)"),
    *_deny(
        "process",
        ("process_vm_readv", "process_vm_writev"),
        "reads or writes another process's memory directly",
    ),
    Rule("kcmp", "process", "compares kernel objects of two processes: reveals kernel pointer ordering"),
    Rule("pidfd_getfd", "process", "steals a file descriptor from another process (ptrace-class access)"),
    Rule("process_madvise", "process", "acts on another process's memory"),
    *_deny("process", ("move_pages", "migrate_pages"), "moves another process's pages between NUMA nodes"),
    Rule(
        "personality",
        "process",
        "ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and the like switch off exploit mitigations; Docker's safe list stays",
        when=not_in32(
            0,
            {
                "PER_LINUX": PER_LINUX,
                "PER_LINUX32": PER_LINUX32,
                "UNAME26": UNAME26,
                "UNAME26+PER_LINUX32": UNAME26 | PER_LINUX32,
                "0xffffffff (query)": PER_QUERY,
            },
        ),
    ),
    # -- set-id files: a writable bind is a host directory, and the host
    #    honours the set-user-ID and set-group-ID bits of what lands there
    #    (nosuid inside the sandbox does not follow the file out). A program
    #    made set-id by the sandbox runs as its owner, the caller (root for a
    #    root caller), when anyone on the host executes it.
    *(
        Rule(
            name,
            "setid",
            "setting S_ISUID or S_ISGID would leave a set-id program in a host directory the sandbox may write",
            when=any_flag(arg, SETID_BITS),
        )
        for name, arg in MODE_ARG.items()
    ),
    Rule(
        "openat2",
        "setid",
        "its mode lives in a struct seccomp cannot read; ENOSYS makes callers fall back to openat(), which is checked",
        E.ENOSYS,
    ),
    # -- terminals: the sandbox may share the caller's terminal (stdio).
    Rule(
        "ioctl",
        "tty",
        "TIOCSTI/TIOCLINUX push keystrokes into a terminal another process reads (the caller's shell); "
        "TIOCSETD attaches rarely used line disciplines, a source of kernel bugs (n_hdlc, n_gsm)",
        when=equals32(1, {"TIOCSTI": TIOCSTI, "TIOCLINUX": TIOCLINUX, "TIOCSETD": TIOCSETD}),
    ),
    # -- sockets: every address family is separate kernel code, often
    #    autoloaded on first use (AF_VSOCK, AF_ALG, AF_TIPC, AF_RDS, AF_CAN...
    #    each had unprivileged exploits). Builds need unix, IPv4/IPv6 and
    #    netlink (getaddrinfo, getifaddrs). EAFNOSUPPORT is what a kernel
    #    without the family answers, so test suites skip instead of failing.
    *(
        Rule(
            name,
            "sockets",
            "address families other than AF_UNIX, AF_INET, AF_INET6, AF_NETLINK: rarely used kernel code",
            E.EAFNOSUPPORT,
            when=not_in32(0, {"AF_UNIX": AF_UNIX, "AF_INET": AF_INET, "AF_INET6": AF_INET6, "AF_NETLINK": AF_NETLINK}),
        )
        for name in ("socket", "socketpair")
    ),
)


# -- the host layout -------------------------------------------------------
#
# Without user namespaces the native backend's best effort runs the command on
# the host's own tree, with Landlock as the only file-system guard and no
# network namespace (docs/native.md, degradation ladder). These rules close
# what Landlock does not govern there; the namespaced sandbox needs none of
# them (its mounts, its netns and its own /proc do the same work).

SOCK_TYPE_MASK = 0xF
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_TCP = 6
_METADATA_REASON = (
    "Landlock does not govern a file's mode, owner, times, extended attributes (ACLs) or flags, and on the host "
    "tree the caller's files are in reach: by path these calls are refused everywhere (the descriptor calls, "
    "fchmod, fchown, futimens, fsetxattr, need a descriptor Landlock granted)"
)

HOST_LAYOUT_RULES: tuple[Rule, ...] = (
    *_deny(
        "host-layout",
        (
            *("chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat", "utime", "utimes", "futimesat"),
            *("setxattr", "lsetxattr", "removexattr", "lremovexattr", "setxattrat", "removexattrat", "file_setattr"),
        ),
        _METADATA_REASON,
    ),
    Rule("utimensat", "host-layout", _METADATA_REASON, when=ArgMatch(1, (), "with a path", above=0)),
    Rule(
        "truncate",
        "host-layout",
        "truncate(2) by path: Landlock governs it from ABI 3 only (ftruncate needs a descriptor opened for writing)",
    ),
    Rule(
        "socket",
        "host-layout",
        "pathname unix sockets are the host's services (docker.sock, D-Bus, agents under /run/user) and Landlock "
        "does not govern connecting to them; socketpair stays",
        E.EAFNOSUPPORT,
        when=equals32(0, {"AF_UNIX": AF_UNIX}),
    ),
    Rule(
        "socketpair",
        "host-layout",
        "a datagram socket may sendto() any host datagram socket by its path (/dev/log, journald); "
        "stream and seqpacket pairs stay",
        E.EPROTONOSUPPORT,
        when=ArgMatch(1, ((SOCK_TYPE_MASK, SOCK_DGRAM),), "SOCK_DGRAM"),
    ),
)

_INET = {"AF_INET": AF_INET, "AF_INET6": AF_INET6}
_NOT_TCP_REASON = (
    "no network namespace in the host layout, and Landlock governs TCP only: without Network, "
    "UDP, ICMP, raw, SCTP and MPTCP sockets would reach the host's network"
)
# Without `Network`: IPv4/IPv6 sockets other than TCP.
HOST_LAYOUT_OFFLINE_RULES: tuple[Rule, ...] = (
    *(
        Rule(
            "socket",
            "host-layout-offline",
            _NOT_TCP_REASON,
            E.EACCES,
            when=equals32(0, {name: family}),
            also=ArgMatch(1, blocks_outside((SOCK_STREAM,), 4), "type other than SOCK_STREAM"),
        )
        for name, family in _INET.items()
    ),
    *(
        Rule(
            "socket",
            "host-layout-offline",
            _NOT_TCP_REASON,
            E.EACCES,
            when=equals32(0, {name: family}),
            # 1..5 by their low 32 bits, everything above IPPROTO_TCP by all 64 (denies more, never less)
            also=ArgMatch(2, ((MASK32, 1), (MASK32 & ~1, 2), (MASK32 & ~1, 4)), "protocol other than 0, IPPROTO_TCP",
                          above=IPPROTO_TCP),
        )
        for name, family in _INET.items()
    ),
)


@attrs.frozen
class Extension:
    """A named relaxation of the default: the listed syscalls' rules are dropped."""

    name: str
    allows: tuple[str, ...]
    reason: str


EXTENSIONS: dict[str, Extension] = {
    e.name: e
    for e in (
        Extension(
            "debug",
            ("ptrace", "process_vm_readv", "process_vm_writev", "personality"),
            "debuggers and sanitizers (gdb, strace, LeakSanitizer's ptrace, ASLR off via personality); "
            "the pid namespace keeps them to the sandbox's own processes",
        ),
    )
}

# Extensions that existed and were removed: a policy naming one is refused with the reason.
REMOVED: dict[str, str] = {
    "nested-sandbox": (
        "the seccomp extension 'nested-sandbox' was removed: it could not work, since a sandbox cannot be "
        "built inside another (inside a native sandbox Landlock refuses every mount, inside bwrap "
        "--disable-userns refuses the inner user namespace, and both drop the capabilities it needs); "
        "start each sandbox from outside, with the default profile"
    ),
}

DEFAULT = "default"
NONE = "none"


def normalize_choice(choice: str) -> str:
    """Canonical form of a profile choice, or ValueError with the reason.

    ``default``, ``none``, or extension names joined by ``+`` (each implies
    the default profile): ``"debug"``; order and repeats do not matter,
    ``default+x`` is ``x``. A removed extension is refused with the reason.
    """
    if choice in (DEFAULT, NONE):
        return choice
    parts = {p.strip() for p in choice.split("+")} - {DEFAULT}
    if NONE in parts:
        raise ValueError("'none' cannot be combined with extensions")
    for name in sorted(parts & REMOVED.keys()):
        raise ValueError(REMOVED[name])
    unknown = sorted(p for p in parts if p not in EXTENSIONS)
    if unknown or not parts:
        known = ", ".join([DEFAULT, NONE, *EXTENSIONS])
        raise ValueError(f"unknown seccomp profile {choice!r}; choose one of {known} (extensions join with '+')")
    return "+".join(sorted(parts))


def rules_for(choice: str, *, host_layout: bool = False, network: bool = True) -> tuple[Rule, ...]:
    """The rules of a normalized, non-``none`` choice, in profile order; with
    `host_layout`, those of the native backend's host layout after them (and,
    without `network`, its refusal of non-TCP IP sockets)."""
    allowed: set[str] = set()
    if choice != DEFAULT:
        for name in choice.split("+"):
            allowed.update(EXTENSIONS[name].allows)
    rules = tuple(r for r in DEFAULT_RULES if r.syscall not in allowed)
    if host_layout:
        rules += HOST_LAYOUT_RULES + (() if network else HOST_LAYOUT_OFFLINE_RULES)
    return rules


def host_layout_name(choice: str, *, network: bool) -> str:
    """How a host-layout filter names itself in `RunResult.enforced`."""
    return f"{choice}+host-layout" + ("" if network else "+tcp-only")


def groups() -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.group for r in DEFAULT_RULES))
