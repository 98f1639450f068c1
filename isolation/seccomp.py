"""Compile the policy's syscall profile into one seccomp BPF program for both backends.

- `compile_filter(policy) -> SeccompFilter | None`: None only for the explicit
  ``none`` choice (which the policy accepts only with ``unsafe_no_seccomp``);
  compiled once per profile choice and cached.
- `SeccompFilter.bpf`: the raw ``struct sock_filter`` array. The native
  backend loads it with seccomp(2) last before execve; bubblewrap reads it from
  a memfd with ``--seccomp FD``. Same bytes, same digest, either way.

libseccomp (``libseccomp.so.2``, present on every Debian host) is driven
through cffi in ABI mode: no headers or compiler at install time, and the
library brings the parts that are easy to get wrong by hand (per-architecture
syscall numbers, the x32 guard, 64-bit argument comparisons, a binary-tree
dispatch). Foreign architectures and the x32 ABI hit the bad-architecture
action, KILL_PROCESS; the i386 ABI (``int 0x80``) is not added, so it is killed
too. Rationale and the profile table: docs/seccomp.md.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import threading
from typing import Any

import attrs

from isolation.errors import IsolationUnavailable
from isolation.policy import IsolationPolicy
from isolation.seccomp_profile import NONE, ArgMatch, Rule, host_layout_name, rules_for

_CDEF = """
typedef void *scmp_filter_ctx;
struct scmp_version { unsigned int major; unsigned int minor; unsigned int micro; };
struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a; uint64_t datum_b; };
const struct scmp_version *seccomp_version(void);
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
uint32_t seccomp_arch_native(void);
int seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name);
int seccomp_rule_add_exact_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                                 unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
"""

# Values from <seccomp.h> (stable ABI since libseccomp 2.x).
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7
_NR_SCMP_ERROR = -1

ARCH_X86_64 = 0xC000003E
ARCH_AARCH64 = 0xC00000B7
ARCH_NAMES = {ARCH_X86_64: "x86_64", ARCH_AARCH64: "aarch64", 0x40000003: "x86"}

# Since pidfd_send_signal (424) every architecture but alpha numbers new
# syscalls identically. Used only for names the installed libseccomp predates
# (2.5.4 in Debian 12 does not know open_tree_attr, Linux 6.15; setxattrat and
# removexattrat, 6.13; file_setattr, 6.17).
UNIFIED_SYSCALL_NUMBERS = {"setxattrat": 463, "removexattrat": 466, "open_tree_attr": 467, "file_setattr": 469}
_UNIFIED_ARCHES = (ARCH_X86_64, ARCH_AARCH64)


def SCMP_ACT_ERRNO(errno: int) -> int:  # noqa: N802 - the libseccomp macro's name
    return _SCMP_ACT_ERRNO | (errno & 0xFFFF)


@attrs.frozen
class SeccompFilter:
    """A compiled filter. `denied` lists only syscalls that actually got a rule;
    `skipped` the profile's syscalls this architecture or libseccomp lacks.

    Of `denied`, `fully_denied` fail whatever their arguments; `restricted` pairs
    each other one with the argument conditions under which it is refused (the
    call succeeds otherwise): `isolation plan` lists the two apart.
    """

    profile: str
    bpf: bytes
    denied: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    arch: str = ""
    libseccomp: str = ""
    restricted: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def fully_denied(self) -> tuple[str, ...]:
        partial = {name for name, _ in self.restricted}
        return tuple(n for n in self.denied if n not in partial)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.bpf).hexdigest()

    def describe(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "sha256": self.digest,
            "denied": list(self.fully_denied),
            "restricted": [{"syscall": n, "refused": list(conds)} for n, conds in self.restricted],
            "skipped": list(self.skipped),
            "rules": list(self.rules),
            "arch": self.arch,
            "libseccomp": self.libseccomp,
            "instructions": len(self.bpf) // 8,
        }


class _Lib:
    """The loaded libseccomp and its cffi handle."""

    def __init__(self) -> None:
        try:
            # Through importlib: the result is Any whether or not types-cffi is installed.
            cffi = importlib.import_module("cffi")
        except ImportError as exc:  # pragma: no cover - cffi is a dependency
            raise IsolationUnavailable(f"seccomp needs cffi: {exc}") from None
        self.ffi: Any = cffi.FFI()
        self.ffi.cdef(_CDEF)
        try:
            self.lib: Any = self.ffi.dlopen("libseccomp.so.2")
        except OSError as exc:
            raise IsolationUnavailable(
                f"cannot load libseccomp.so.2 ({exc}); install it (Debian/Ubuntu: apt-get install libseccomp2)"
            ) from None
        v = self.lib.seccomp_version()
        self.version = (int(v.major), int(v.minor), int(v.micro))
        if self.version < (2, 4, 0):
            raise IsolationUnavailable(
                f"libseccomp {'.'.join(map(str, self.version))} is too old; 2.4 or later is needed (KILL_PROCESS)"
            )
        self.arch = int(self.lib.seccomp_arch_native())


_lib_lock = threading.Lock()


@functools.cache
def _libseccomp() -> _Lib:
    return _Lib()


def libseccomp_version() -> tuple[int, int, int]:
    return _libseccomp().version


def syscall_number(name: str) -> int | None:
    """The native architecture's number for `name`, or None when it has none.

    Tests use it to issue raw syscalls inside the sandbox with the numbers the
    filter was built from.
    """
    lib = _libseccomp()
    nr = int(lib.lib.seccomp_syscall_resolve_name_arch(lib.arch, name.encode()))
    if nr == _NR_SCMP_ERROR and lib.arch in _UNIFIED_ARCHES:
        return UNIFIED_SYSCALL_NUMBERS.get(name)
    # Negative values are libseccomp's pseudo-numbers: not on this architecture.
    return nr if nr >= 0 else None


def _check(rc: int, what: str) -> None:
    if rc < 0:
        from isolation.userns import seccomp_status  # libseccomp fails this way when seccomp(2) is refused

        ok, why = seccomp_status()
        raise IsolationUnavailable(f"libseccomp: {what} failed: {os.strerror(-rc)}" + ("" if ok else f": {why}"))


def _export(lib: _Lib, ctx: Any) -> bytes:
    fd = os.memfd_create("isolation-seccomp-export", os.MFD_CLOEXEC)
    try:
        _check(lib.lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def _comparisons(match: ArgMatch) -> list[tuple[int, int, int, int]]:
    """(arg, op, datum_a, datum_b) alternatives, any of which makes `match` hold."""
    alts = [(match.arg, SCMP_CMP_MASKED_EQ, mask, value) for mask, value in match.pairs]
    if match.above is not None:
        alts.append((match.arg, SCMP_CMP_GT, match.above, 0))
    return alts


def _add_rule(lib: _Lib, ctx: Any, nr: int, rule: Rule) -> int:
    """Add `rule` for syscall `nr`; returns how many libseccomp rules it took
    (one per alternative of `when`, times one per alternative of `also`)."""
    action = SCMP_ACT_ERRNO(rule.errno)
    if rule.when is None:
        _check(lib.lib.seccomp_rule_add_exact_array(ctx, action, nr, 0, lib.ffi.NULL), f"rule {rule.syscall}")
        return 1
    combos = [[c] for c in _comparisons(rule.when)]
    if rule.also is not None:
        combos = [[*combo, c] for combo in combos for c in _comparisons(rule.also)]
    cmp = lib.ffi.new("struct scmp_arg_cmp[2]")
    for combo in combos:
        for i, (arg, op, datum_a, datum_b) in enumerate(combo):
            cmp[i].arg, cmp[i].op, cmp[i].datum_a, cmp[i].datum_b = arg, op, datum_a, datum_b
        _check(lib.lib.seccomp_rule_add_exact_array(ctx, action, nr, len(combo), cmp), f"rule {rule.label}")
    return len(combos)


@functools.cache
def compile_profile(choice: str, *, host_layout: bool = False, network: bool = True) -> SeccompFilter:
    """Compile a normalized profile choice (not ``none``) for the native architecture;
    `host_layout` adds the rules of the native backend's host layout (see seccomp_profile)."""
    lib = _libseccomp()
    rules = rules_for(choice, host_layout=host_layout, network=network)
    denied: list[str] = []
    skipped: list[str] = []
    labels: list[str] = []
    unconditional: set[str] = set()
    conditions: dict[str, list[str]] = {}
    with _lib_lock:
        ctx = lib.lib.seccomp_init(SCMP_ACT_ALLOW)
        if ctx == lib.ffi.NULL:
            raise IsolationUnavailable("libseccomp: seccomp_init failed")
        try:
            _check(lib.lib.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "bad-arch action")
            # Binary-tree dispatch on the syscall number (libseccomp >= 2.5);
            # older versions keep the linear list, which is correct, only slower.
            lib.lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
            for rule in rules:
                nr = syscall_number(rule.syscall)
                if nr is None:
                    skipped.append(rule.syscall)
                    continue
                _add_rule(lib, ctx, nr, rule)
                denied.append(rule.syscall)
                labels.append(f"{rule.label}: {_errno_name(rule.errno)}")
                if rule.when is None:
                    unconditional.add(rule.syscall)
                else:
                    conds = ", ".join(m.describe for m in (rule.when, rule.also) if m is not None)
                    conditions.setdefault(rule.syscall, []).append(f"{conds}: {_errno_name(rule.errno)}")
            bpf = _export(lib, ctx)
        finally:
            lib.lib.seccomp_release(ctx)
    if not bpf or len(bpf) % 8:
        raise IsolationUnavailable(f"libseccomp produced a malformed filter ({len(bpf)} bytes)")
    return SeccompFilter(
        profile=host_layout_name(choice, network=network) if host_layout else choice,
        bpf=bpf,
        denied=tuple(dict.fromkeys(denied)),
        skipped=tuple(dict.fromkeys(skipped)),
        rules=tuple(labels),
        restricted=tuple((n, tuple(c)) for n, c in conditions.items() if n not in unconditional),
        arch=ARCH_NAMES.get(lib.arch, hex(lib.arch)),
        libseccomp=".".join(map(str, lib.version)),
    )


def _errno_name(code: int) -> str:
    import errno

    return errno.errorcode.get(code, str(code))


def compile_filter(policy: IsolationPolicy) -> SeccompFilter | None:
    """The filter `policy` asks for; None only for the explicit, unsafe ``none``."""
    if policy.seccomp == NONE:
        return None
    return compile_profile(policy.seccomp)
