"""Unit tests for the seccomp filter: compilation, caching, the policy's choice, and the
argument masks checked by loading the real BPF into a forked child's kernel filter."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import platform
import random
import struct
from collections.abc import Callable, Sequence

import pytest

from isolation import Cost, EffectSet, FsRead, IsolationPolicy, Network, PolicyError, Process, Unknown, build_plan
from isolation.cli import main as cli_main
from isolation.seccomp import (
    SCMP_ACT_KILL_PROCESS,
    SeccompFilter,
    compile_filter,
    compile_profile,
    syscall_number,
)
from isolation.seccomp_profile import (
    ALLOWED_PERSONALITIES,
    ALLOWED_SOCKET_FAMILIES,
    CLONE_NAMESPACE_FLAGS,
    DEFAULT_RULES,
    EXTENSIONS,
    TIOCLINUX,
    TIOCSETD,
    TIOCSTI,
    blocks_outside,
    rules_for,
)

X86_64 = platform.machine() == "x86_64"


def default() -> SeccompFilter:
    f = compile_filter(IsolationPolicy())
    assert f is not None
    return f


# -- compilation -------------------------------------------------------------


def test_default_filter_is_well_formed_bpf() -> None:
    f = default()
    assert f.profile == "default"
    assert f.bpf and len(f.bpf) % 8 == 0
    assert len(f.bpf) // 8 <= 4096  # BPF_MAXINSNS
    assert f.digest == hashlib.sha256(f.bpf).hexdigest()
    assert f.describe()["sha256"] == f.digest


def test_digest_is_stable_across_compilations() -> None:
    first = default()
    compile_profile.cache_clear()
    again = default()
    assert again is not first and again.bpf == first.bpf and again.digest == first.digest


def test_compiled_once_per_choice_and_cached() -> None:
    a = compile_filter(IsolationPolicy(network=True))
    b = compile_filter(IsolationPolicy.from_effects([FsRead("/usr/share")]))
    assert a is b is default()
    assert compile_filter(IsolationPolicy(seccomp="debug")) is compile_filter(
        IsolationPolicy(seccomp="debug+default+debug")
    )


def test_denied_lists_only_rules_actually_added() -> None:
    f = default()
    profile = {r.syscall for r in DEFAULT_RULES}
    assert set(f.denied) | set(f.skipped) == profile
    assert not set(f.denied) & set(f.skipped)
    assert all(syscall_number(n) is not None for n in f.denied)
    assert all(syscall_number(n) is None for n in f.skipped)
    if X86_64:
        # libseccomp 2.5.4 predates open_tree_attr; the unified number covers it.
        assert f.skipped == () and syscall_number("open_tree_attr") == 467
    for must in ("unshare", "clone", "clone3", "mount", "bpf", "io_uring_setup", "ptrace", "ioctl", "personality"):
        assert must in f.denied


def test_unknown_syscall_names_resolve_to_none() -> None:
    assert syscall_number("no_such_syscall_xyz") is None
    if X86_64:
        assert syscall_number("umount") is None  # i386-only: a libseccomp pseudo-number
        assert syscall_number("getppid") == 110


def _instructions(bpf: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("=HBBI", bpf[i : i + 8]) for i in range(0, len(bpf), 8)]


def test_foreign_architectures_and_x32_hit_kill_process() -> None:
    ins = _instructions(default().bpf)
    BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x06
    assert ins[0] == (BPF_LD_W_ABS, 0, 0, 4)  # seccomp_data.arch
    assert ins[1][0] == BPF_JEQ_K and ins[1][3] == (0xC000003E if X86_64 else ins[1][3])
    # every arch mismatch ends in KILL_PROCESS
    target = 2 + ins[1][2]
    assert ins[target] == (BPF_RET_K, 0, 0, SCMP_ACT_KILL_PROCESS)
    if X86_64:
        # libseccomp's x32 guard: syscall numbers >= __X32_SYSCALL_BIT go to the bad-arch action
        assert any(c == BPF_JGE_K and k == 0x40000000 for c, _, _, k in ins[:4])
        # only x86_64 is in the filter: no i386 (0x40000003) section
        assert not any(c == BPF_JEQ_K and k == 0x40000003 for c, _, _, k in ins)


# -- the policy's choice --------------------------------------------------------


def test_none_requires_the_explicit_unsafe_flag() -> None:
    with pytest.raises(PolicyError, match="unsafe_no_seccomp=True"):
        IsolationPolicy(seccomp="none")
    with pytest.raises(PolicyError, match="only goes with seccomp 'none'"):
        IsolationPolicy(unsafe_no_seccomp=True)
    with pytest.raises(PolicyError, match="unsafe_no_seccomp"):
        IsolationPolicy().evolve(seccomp="none")
    p = IsolationPolicy(seccomp="none", unsafe_no_seccomp=True)
    assert compile_filter(p) is None
    assert build_plan(p, ["true"]).seccomp is None


def test_none_in_json_requires_the_flag_too() -> None:
    with pytest.raises(PolicyError, match="unsafe_no_seccomp"):
        IsolationPolicy.from_json('{"schema": 1, "seccomp": "none"}')
    with pytest.raises(PolicyError, match="unsafe_no_seccomp: expected true or false"):
        IsolationPolicy.from_json('{"schema": 1, "seccomp": "none", "unsafe_no_seccomp": "yes"}')
    with pytest.raises(PolicyError, match="unknown field"):
        IsolationPolicy.from_json('{"schema": 1, "seccomp": "none", "unsafe_no_seccmp": true}')


@pytest.mark.parametrize(
    ("choice", "canonical"),
    [
        ("default", "default"),
        ("debug", "debug"),
        ("default+debug+debug", "debug"),
    ],
)
def test_choice_round_trips_through_json(choice: str, canonical: str) -> None:
    p = IsolationPolicy(seccomp=choice)
    assert p.seccomp == canonical
    doc = json.loads(p.to_json())
    assert doc["seccomp"] == canonical and "unsafe_no_seccomp" not in doc
    assert IsolationPolicy.from_json(p.to_json()) == p


def test_unsafe_none_round_trips_through_json() -> None:
    p = IsolationPolicy(seccomp="none", unsafe_no_seccomp=True)
    doc = json.loads(p.to_json())
    assert doc["seccomp"] == "none" and doc["unsafe_no_seccomp"] is True
    assert IsolationPolicy.from_json(p.to_json()) == p


@pytest.mark.parametrize("bad", ["", "strict", "none+debug", "debug+bogus", 7])
def test_unknown_choices_are_rejected(bad: object) -> None:
    with pytest.raises(PolicyError, match="seccomp"):
        IsolationPolicy(seccomp=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("effect", [Process, Network, Unknown, Cost(3), FsRead("/usr/share")])
def test_no_effect_relaxes_the_filter(effect: object) -> None:
    """The effect -> profile mapping is explicit: every effect gets `default`."""
    assert IsolationPolicy.from_effects(EffectSet.of([effect])).seccomp == "default"


# -- extensions -------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["nested-sandbox", "debug+nested-sandbox", "default+nested-sandbox"])
def test_removed_nested_sandbox_extension_is_refused_with_the_reason(choice: str) -> None:
    """Nesting cannot work (Landlock refuses mounts inside native, --disable-userns inside bwrap):
    a policy naming the extension is refused, in Python and in JSON, saying why."""
    why = "'nested-sandbox' was removed: it could not work.*Landlock.*disable-userns"
    with pytest.raises(PolicyError, match=why):
        IsolationPolicy(seccomp=choice)
    with pytest.raises(PolicyError, match=why):
        IsolationPolicy.from_json(json.dumps({"schema": 1, "seccomp": choice}))
    # control: the remaining extension is accepted
    assert IsolationPolicy(seccomp="debug").seccomp == "debug"


def test_debug_extension() -> None:
    debug = set(compile_profile("debug").denied)
    assert not debug & {"ptrace", "process_vm_readv", "process_vm_writev", "personality"}
    assert {"kcmp", "pidfd_getfd", "unshare", "bpf", "mount", "setns"} <= debug
    kept = {r.syscall for r in DEFAULT_RULES} - set(EXTENSIONS["debug"].allows)
    assert {r.syscall for r in rules_for("debug")} == kept
    assert set(EXTENSIONS) == {"debug"}


def test_every_rule_has_a_reason_and_a_real_errno() -> None:
    for r in DEFAULT_RULES:
        assert len(r.reason) > 15, r
        assert r.errno in errno.errorcode
    for e in EXTENSIONS.values():
        assert e.reason and set(e.allows) <= {r.syscall for r in DEFAULT_RULES}


# -- plan and CLI -----------------------------------------------------------------


def test_plan_and_cli_show_the_filter(capsys: pytest.CaptureFixture[str]) -> None:
    plan = build_plan(IsolationPolicy(), ["true"])
    assert plan.seccomp is default()
    assert cli_main(["plan", "--backend", "bwrap", "--", "true"]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {default().digest}" in out
    assert "unshare" in out and "io_uring_setup" in out
    assert cli_main(["plan", "--backend", "bwrap", "--json", "--", "true"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["seccomp"]["denied"] == list(default().fully_denied)
    assert doc["seccomp"]["rules"][0] == "unshare: EPERM"


# -- blocks_outside: the "not in this set" encoding ------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_blocks_outside_covers_exactly_the_complement(seed: int) -> None:
    rng = random.Random(seed)
    bits = 8
    allowed = {rng.randrange(1 << bits) for _ in range(rng.randrange(1, 6))} | ({255} if seed % 2 else set())
    pairs = blocks_outside(allowed, bits)
    for v in range(1 << bits):
        hits = sum(1 for mask, value in pairs if v & mask == value)
        assert hits == (0 if v in allowed else 1), (v, allowed)  # disjoint blocks, exact complement


# -- the argument masks, in the kernel -------------------------------------------


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _raw(nr: int, calls: Sequence[Sequence[int]], bpf: bytes | None) -> list[int]:
    """Issue syscall `nr` with each argument list in a forked child, under `bpf` if given;
    returns the errno of each call (0 for success)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            if bpf is not None:
                buf = ctypes.create_string_buffer(bpf, len(bpf))
                prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
                assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
                assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            out = []
            for args in calls:
                ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
                out.append(ctypes.get_errno() if ret == -1 else 0)
                if ret >= 0 and nr in (syscall_number("socket"),):
                    os.close(ret)
            os.write(w, json.dumps(out).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: list[int] = json.loads(data)
    return result


def _check_masks(
    nr: int,
    calls: list[list[int]],
    denied: Callable[[list[int]], bool],
    answer: int,
    controllable: Callable[[list[int]], bool] = lambda a: True,
) -> None:
    """Under the filter each call answers `answer` exactly when `denied`, else what the
    kernel answers without the filter; the unfiltered control runs only `controllable` calls."""
    filtered = _raw(nr, calls, default().bpf)
    ctl_calls = [a for a in calls if controllable(a) or not denied(a)]
    control = dict(zip(map(tuple, ctl_calls), _raw(nr, ctl_calls, None), strict=True))
    for args, got in zip(calls, filtered, strict=True):
        want = answer if denied(args) else control[tuple(args)]
        assert got == want, ([hex(a) for a in args], errno.errorcode.get(got, got))
    assert any(control[tuple(a)] != answer for a in ctl_calls if denied(a))


def _values(specials: Sequence[int], seed: int) -> list[int]:
    rng = random.Random(seed)
    vals = set(specials)
    vals |= {1 << b for b in range(32)}
    vals |= {v + d for v in specials for d in (-1, 1)}
    vals |= {rng.getrandbits(32) for _ in range(300)}
    vals |= {v | (rng.getrandbits(32) << 32) for v in list(vals)[:100]}
    vals |= {v | (1 << 63) for v in specials}
    return sorted(v & (2**64 - 1) for v in vals)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def test_personality_mask_in_the_kernel() -> None:
    nr = syscall_number("personality")
    assert nr is not None
    calls = [[_signed(v)] for v in _values(ALLOWED_PERSONALITIES, 1)]
    _check_masks(nr, calls, lambda a: (a[0] & 0xFFFFFFFF) not in ALLOWED_PERSONALITIES, errno.EPERM)


def test_socket_family_mask_in_the_kernel() -> None:
    nr = syscall_number("socket")
    assert nr is not None
    families = _values([*ALLOWED_SOCKET_FAMILIES, *range(0, 64)], 2)
    calls = [[_signed(v), 2, 0] for v in families]  # SOCK_DGRAM
    # Unfiltered, only AF_PACKET is tried among the denied families: socket() of
    # any other would make the host's kernel autoload that family's module.
    _check_masks(
        nr,
        calls,
        lambda a: (a[0] & 0xFFFFFFFF) not in ALLOWED_SOCKET_FAMILIES,
        errno.EAFNOSUPPORT,
        controllable=lambda a: a[0] == 17,
    )


def test_ioctl_terminal_mask_in_the_kernel() -> None:
    nr = syscall_number("ioctl")
    assert nr is not None
    cmds = _values([TIOCSTI, TIOCLINUX, TIOCSETD, 0x5401, 0x5413], 3)
    calls = [[-1, _signed(v), 0] for v in cmds]  # fd -1: EBADF when the kernel sees it
    _check_masks(nr, calls, lambda a: (a[1] & 0xFFFFFFFF) in (TIOCSTI, TIOCLINUX, TIOCSETD), errno.EPERM)


def test_clone_namespace_mask_in_the_kernel() -> None:
    nr = syscall_number("clone")
    assert nr is not None
    rng = random.Random(4)
    clone_thread, clone_sighand = 0x10000, 0x800
    flags = [rng.getrandbits(64) for _ in range(300)] + list(CLONE_NAMESPACE_FLAGS.values()) + [0, 0x80]
    # CLONE_THREAD without CLONE_SIGHAND: the kernel refuses with EINVAL before doing anything
    calls = [[_signed((f | clone_thread) & ~clone_sighand), 0, 0, 0, 0] for f in flags]
    ns = 0
    for bit in CLONE_NAMESPACE_FLAGS.values():
        ns |= bit
    _check_masks(nr, calls, lambda a: bool(a[0] & ns), errno.EPERM)


def test_docs_table_names_every_rule_and_extension() -> None:
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "seccomp.md")) as f:
        doc = f.read()
    for r in DEFAULT_RULES:
        assert f"`{r.syscall}`" in doc and r.reason in doc, r.syscall
    for name in EXTENSIONS:
        assert f"`{name}`" in doc
