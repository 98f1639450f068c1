"""The read-only system view: just enough of the host for dynamically linked programs.

Deliberately minimal: `/usr` and the merged-usr links, the dynamic loader's
cache and configuration, `/etc/alternatives`, the time zone, and `/nix/store`
when present. Home directories, `/root`, `/srv`, `/var`, `/home`, `/mnt` and the
rest of `/etc` stay invisible. TLS and DNS files come only with `Network`.
"""

from __future__ import annotations

import functools
import os

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
NETWORK_ETC: tuple[str, ...] = (
    "/etc/ssl/certs",
    "/etc/ca-certificates",
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
    return _entries(SYSTEM_ROOTS + SYSTEM_ETC + (NETWORK_ETC if network else ()))
