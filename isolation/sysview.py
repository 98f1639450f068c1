"""The read-only system view: just enough of the host for dynamically linked programs.

Deliberately minimal: `/usr` and the merged-usr links, the dynamic loader's
cache and configuration, `/etc/alternatives`, the time zone, and `/nix/store`
when present. Home directories, `/root`, `/srv`, `/var`, `/home`, `/mnt` and the
rest of `/etc` stay invisible. The TLS trust store (public CA certificates) is
always readable, so a tool without `Network` fails for the real reason (no
network), not with "no CA bundle"; DNS files come only with `Network`.
"""

from __future__ import annotations

import functools
import os
import stat

import attrs

# Directories (or merged-usr symlinks) at the root that hold programs and libraries.
SYSTEM_ROOTS: tuple[str, ...] = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/nix/store")
SYSTEM_ETC: tuple[str, ...] = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
)
# The TLS trust store: public CA certificates and OpenSSL's configuration, never
# the private-key directories beside them (/etc/ssl/private, /etc/pki/tls/private).
# Debian/Ubuntu keep the certificates under /etc/ssl/certs (links into
# /usr/share/ca-certificates), Fedora/RHEL under /etc/pki, Alpine/Arch/SUSE add
# /etc/ssl/cert.pem or /etc/ca-certificates.
TRUST_STORE: tuple[str, ...] = (
    "/etc/ssl/certs",
    "/etc/ssl/cert.pem",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/pki/ca-trust",
    "/etc/pki/tls/certs",
    "/etc/pki/tls/cert.pem",
    "/etc/pki/tls/openssl.cnf",
)
NETWORK_ETC: tuple[str, ...] = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
)

PASSWD = b"nobody:x:65534:65534:nobody:/work:/usr/sbin/nologin\n"
GROUP = b"nogroup:x:65534:\n"


@attrs.frozen
class SystemEntry:
    """One host path of the system view: `symlink` holds the link text when it is a symlink."""

    path: str
    symlink: str | None = None


def _entries(paths: tuple[str, ...]) -> tuple[SystemEntry, ...]:
    out: list[SystemEntry] = []
    for p in paths:
        if os.path.islink(p):
            out.append(SystemEntry(p, os.readlink(p)))
        elif os.path.exists(p):
            out.append(SystemEntry(p))
    return tuple(out)


@functools.cache
def system_view(network: bool) -> tuple[SystemEntry, ...]:
    """The host paths of the system view, as they exist on this host (cached per process)."""
    return _entries(SYSTEM_ROOTS + SYSTEM_ETC + TRUST_STORE + (NETWORK_ETC if network else ()))


# Host-wide kernel knobs of the sandbox's own /proc, made read-only in every sandbox
# (plan `proc-ro`): a root caller's sandbox user is host uid 0, which owns them, and
# no capability is needed to write what one owns. Each names a directory or file
# directly under /proc; one the kernel lacks (no CONFIG_MAGIC_SYSRQ, no PCI) is skipped.
PROC_READ_ONLY: tuple[str, ...] = (
    "sys",  # the sysctls: kernel.core_pattern runs any program as host root on a crash
    "sysrq-trigger",  # one byte reboots, crashes or freezes the host
    "irq",  # interrupt affinity of the host's devices
    "bus",  # PCI configuration space and the like of the host's devices
    "fs",  # file-system-wide knobs (nfsd, ...) of the host
)

# The host's character devices bound into every sandbox's /dev (plan `device`),
# read-only (their mode and times are the host's) and still usable: what programs
# expect to find there, each harmless. Nothing else of the host's /dev is visible.
DEV_NODES: tuple[str, ...] = (
    "null",  # the sink and the empty source every shell redirects to
    "zero",  # a source of zeros (and anonymous memory for old mmap users)
    "full",  # a sink that is always full (ENOSPC), for programs that test their errors
    "random",  # the kernel's random numbers ...
    "urandom",  # ... as most programs read them
    "tty",  # the controlling terminal: none in the sandbox's new session (ENXIO), but opened by tools
)

# Host-wide /proc entries masked in every sandbox: they list the keys (and key
# quotas) of the sandbox's uid, which outside is the caller's.
PROC_MASKED_ALWAYS: tuple[str, ...] = ("/proc/keys", "/proc/key-users")


def _root_only_proc_entries() -> list[str]:
    """Host-wide /proc files that only their owner (root) may read: kpageflags,
    slabinfo, timer_list, the 0600 knobs under /proc/sys, ... Not per-process entries."""
    found: list[str] = []
    for top, dirs, files in os.walk("/proc"):
        if top == "/proc":
            dirs[:] = [d for d in dirs if not d.isdigit() and d not in ("self", "thread-self")]
        for name in files:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            owner_only = st.st_mode & stat.S_IRUSR and not st.st_mode & stat.S_IROTH
            if stat.S_ISREG(st.st_mode) and st.st_uid == 0 and owner_only:
                found.append(path)
    return found


# Below it, what a process sees belongs to its own network namespace.
PROC_NET_SYSCTLS = "/proc/sys/net"


@functools.cache
def proc_masks(network: bool) -> tuple[str, ...]:
    """The /proc entries each sandbox covers with an unreadable file (plan `mask` mounts).

    A root caller's sandbox uid maps to host uid 0, the owner of every host-wide
    /proc entry: without a mask it could read the root-only ones (no capability
    is needed to read a file one owns). For any other caller they are unreadable
    anyway and only the key lists are masked.

    Without `network` the sandbox's /proc/sys/net shows its own, fresh network
    namespace, not the host's: nothing there to hide, and the host's per-interface
    and initial-namespace-only entries do not even exist inside (a mask needs its
    target: bubblewrap cannot create one under /proc).
    """
    masks = list(PROC_MASKED_ALWAYS)
    if os.geteuid() == 0:
        for p in _root_only_proc_entries():
            if p not in masks and (network or not p.startswith(PROC_NET_SYSCTLS + "/")):
                masks.append(p)
    return tuple(sorted(masks))
