"""Unit tests: the exact bubblewrap command line for each policy shape."""

from __future__ import annotations

import os
import stat

import attrs
import pytest

from isolation import Bind, FsRead, FsWrite, IsolationPolicy, Network, build_bwrap_command
from isolation.backends import bwrap as bwrap_mod
from isolation.limits import Limits
from isolation.plan import Mount, build_plan

BW = "/usr/bin/bwrap"


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_strict_baseline_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "x")
    monkeypatch.setenv("LANG", "C.UTF-8")
    argv = build_bwrap_command(IsolationPolicy(), ["echo", "hi"], bwrap=BW, seccomp_fd=7)
    assert argv[0] == BW
    head = argv[: argv.index("--hostname")]
    assert head[1:] == [
        "--unshare-all",
        "--unshare-user",
        "--unshare-cgroup",
        "--die-with-parent",
        "--new-session",
        "--uid",
        "65534",
        "--gid",
        "65534",
        *(["--disable-userns"] if bwrap_mod.bwrap_version(BW) >= (0, 8, 0) else []),
    ]
    assert "--share-net" not in argv
    for flag in ("--clearenv", "--cap-drop"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    env = _pairs(argv, "--setenv")
    assert ("HOME", "/work") in env and ("USER", "nobody") in env and ("LANG", "C.UTF-8") in env
    assert "SECRET_TOKEN" not in " ".join(argv)
    assert tuple(argv[argv.index("--proc") : argv.index("--proc") + 2]) == ("--proc", "/proc")
    assert "--dev" not in argv  # /dev is built from the plan (see test_dev_is_built_from_the_plan)
    tmpfs = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert tmpfs == ["/dev", "/dev/shm", "/tmp", "/work"]
    assert argv[argv.index("--chdir") + 1] == "/work"
    assert argv[-3:] == ["--", "echo", "hi"]
    assert ("/usr", "/usr") in _pairs(argv, "--ro-bind")
    root_ro = next(i for i, a in enumerate(argv) if a == "--remount-ro" and argv[i + 1] == "/")
    assert root_ro > max(i for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--tmpfs"))


def test_network_shares_the_net_namespace() -> None:
    argv = build_bwrap_command(IsolationPolicy.from_effects([Network]), ["true"], bwrap=BW)
    assert "--share-net" in argv
    assert ("/etc/resolv.conf", "/etc/resolv.conf") in _pairs(argv, "--ro-bind")


def test_rw_and_ro_binds_and_work(tmp_path: object) -> None:
    ws = str(tmp_path)
    os.makedirs(ws + "/.git")
    policy = IsolationPolicy.from_effects([FsWrite(ws), FsRead(ws + "/.git"), FsRead("/opt")], work_host="/srv")
    argv = build_bwrap_command(policy, ["true"], bwrap=BW)
    rw = [pair for pair in _pairs(argv, "--bind") if not pair[1].startswith("/proc/")]  # a root caller's masks
    assert rw == [("/srv", "/work"), (ws, ws)]
    ro = _pairs(argv, "--ro-bind")
    assert ("/opt", "/opt") in ro and (ws + "/.git", ws + "/.git") in ro
    i_rw = argv.index(ws)
    i_ro = argv.index(ws + "/.git")
    assert i_rw < i_ro, "the narrower read-only bind must be applied after its writable parent"
    assert [a for i, a in enumerate(argv) if i and argv[i - 1] == "--tmpfs"] == ["/dev", "/dev/shm", "/tmp"]


def test_custom_bind_target() -> None:
    argv = build_bwrap_command(IsolationPolicy(ro_binds=[Bind("/usr/share", "/data")]), ["true"], bwrap=BW)
    assert ("/usr/share", "/data") in _pairs(argv, "--ro-bind")


def test_env_allowlist_passes_set_variables_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEP_ME", "1")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    argv = build_bwrap_command(
        IsolationPolicy.from_effects([], env_allowlist=["KEEP_ME", "UNSET_ONE"]), ["true"], bwrap=BW
    )
    env = dict(_pairs(argv, "--setenv"))
    assert env["KEEP_ME"] == "1" and "UNSET_ONE" not in env


def test_find_bwrap_prefers_trusted_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    assert bwrap_mod.find_bwrap() == "/usr/bin/bwrap"
    fake = os.path.join(str(tmp_path), "bwrap")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(fake, 0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin")
    assert bwrap_mod.find_bwrap() == "/usr/bin/bwrap"
    monkeypatch.setattr(bwrap_mod, "TRUSTED_BWRAP_PATHS", ())
    monkeypatch.setattr(bwrap_mod, "_path_warned", False)
    with pytest.warns(bwrap_mod.BwrapFromPathWarning, match="from \\$PATH"):
        assert bwrap_mod.find_bwrap() == fake


def _tmpfs_sizes(argv: list[str]) -> dict[str, int | None]:
    """Each --tmpfs target and the --size just before it (None: unbounded)."""
    out: dict[str, int | None] = {}
    for i, a in enumerate(argv):
        if a == "--tmpfs":
            opts = argv[max(i - 4, 0) : i]
            out[argv[i + 1]] = int(opts[opts.index("--size") + 1]) if "--size" in opts else None
    return out


@pytest.mark.parametrize(
    ("limits", "expected"),
    [(Limits(), 1 << 30), (Limits(memory=64 << 20), 64 << 20), (Limits(tmpfs_size=8 << 20, memory=1 << 30), 8 << 20)],
)
def test_every_writable_tmpfs_is_bounded(limits: Limits, expected: int) -> None:
    argv = build_bwrap_command(IsolationPolicy(limits=limits), ["true"], bwrap=BW)
    sizes = _tmpfs_sizes(argv)
    assert sizes == {"/dev": expected, "/dev/shm": expected, "/tmp": expected, "/work": expected}
    assert argv[argv.index("/dev/shm") - 3 : argv.index("/dev/shm")] == ["--perms", "1777", "--tmpfs"]


@pytest.mark.parametrize("root", [False, True])
def test_dev_is_built_from_the_plan(root: bool) -> None:
    """A tmpfs with exactly the plan's nodes (a root caller's private copies), the links
    native makes, a bounded /dev/shm, read-only; no --dev (bubblewrap's own nodes,
    devpts and console) and no devpts at all: bubblewrap's argv cannot bound one."""
    plan = build_plan(IsolationPolicy(), ["true"])
    copies = "/var/tmp/isolation-dev-1-x" if root else None
    argv = bwrap_mod.plan_to_bwrap_args(plan, BW, dev_copies=copies)
    start = argv.index("/dev") - 1
    end = argv.index("--remount-ro", start) + 2
    assert argv[start - 4 : start + 2] == ["--size", str(1 << 30), "--perms", "0755", "--tmpfs", "/dev"]
    assert argv[end - 1] == "/dev" and "--dev" not in argv
    nodes = [m for m in plan.mounts if m.kind == "device"]
    assert [m.target for m in nodes] == [f"/dev/{n}" for n in ("null", "zero", "full", "random", "urandom", "tty")]
    want = [(f"{copies}/{os.path.basename(m.target)}" if root else str(m.source), m.target) for m in nodes]
    assert _pairs(argv, "--dev-bind") == want
    links = [(src, dst) for src, dst in _pairs(argv, "--symlink") if dst.startswith("/dev/")]
    assert links == [(link, f"/dev/{name}") for link, name in bwrap_mod.DEV_LINKS]
    block = argv[start:end]
    assert [a for i, a in enumerate(block) if i and block[i - 1] == "--tmpfs"] == ["/dev", "/dev/shm"]
    assert not any(a.startswith(("/dev/pts", "/dev/ptmx")) for a in argv)
    # Control: a plan without a node gets no bind for it.
    fewer = attrs.evolve(plan, mounts=tuple(m for m in plan.mounts if m.target != "/dev/full"))
    assert "/dev/full" not in bwrap_mod.plan_to_bwrap_args(fewer, BW, dev_copies=copies)


@pytest.mark.parametrize("network", [False, True])
def test_masks_are_bound_from_an_unopenable_empty_file(network: bool) -> None:
    policy = IsolationPolicy(network=network)
    argv = build_bwrap_command(policy, ["true"], bwrap=BW)
    masks = [t for t in build_plan(policy, ["true"]).mounts if t.kind == "mask"]
    assert {"/proc/keys", "/proc/key-users"} <= {m.target for m in masks}
    # A root caller's mask file is not the (root-mapped) sandbox user's: writable binds, which
    # bubblewrap makes without re-reading the mount table. Anyone else's: read-only binds.
    kind = "--bind" if os.geteuid() == 0 else "--ro-bind"
    binds = dict((dst, src) for src, dst in _pairs(argv, kind))
    sources = {binds[m.target] for m in masks}
    assert len(sources) == 1
    st = os.stat(sources.pop())
    assert stat.S_IMODE(st.st_mode) == 0 and st.st_size == 0 and stat.S_ISREG(st.st_mode)
    assert st.st_uid != 0 if os.geteuid() == 0 else st.st_uid == os.geteuid()
    assert all(argv.index(m.target) > argv.index("--proc") for m in masks)
    # Only targets that exist inside: without Network the host's /proc/sys/net is not the sandbox's.
    assert network or not any(m.target.startswith("/proc/sys/net/") for m in masks)


def test_a_mask_whose_target_is_gone_is_skipped() -> None:
    plan = build_plan(IsolationPolicy(), ["true"])
    gone = Mount("mask", "/proc/sys/net/ipv6/conf/isolation-gone0/stable_secret", origin="sandbox")
    argv = bwrap_mod.plan_to_bwrap_args(attrs.evolve(plan, mounts=(*plan.mounts, gone)), BW)
    assert gone.target not in argv
    assert "/proc/keys" in argv  # control: an existing target is masked
