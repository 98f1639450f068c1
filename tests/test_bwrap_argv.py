"""Unit tests: the exact bubblewrap command line for each policy shape."""

from __future__ import annotations

import os

import pytest

from isolation import Bind, FsRead, FsWrite, IsolationPolicy, Network, build_bwrap_command
from isolation.backends import bwrap as bwrap_mod

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
    assert argv[argv.index("--dev") + 1] == "/dev"
    tmpfs = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert tmpfs == ["/tmp", "/work"]
    assert argv[argv.index("--chdir") + 1] == "/work"
    assert argv[-3:] == ["--", "echo", "hi"]
    assert ("/usr", "/usr") in _pairs(argv, "--ro-bind")
    assert argv.index("--remount-ro") > max(i for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--tmpfs"))


def test_network_shares_the_net_namespace() -> None:
    argv = build_bwrap_command(IsolationPolicy.from_effects([Network]), ["true"], bwrap=BW)
    assert "--share-net" in argv
    assert ("/etc/resolv.conf", "/etc/resolv.conf") in _pairs(argv, "--ro-bind")


def test_rw_and_ro_binds_and_work(tmp_path: object) -> None:
    ws = str(tmp_path)
    os.makedirs(ws + "/.git")
    policy = IsolationPolicy.from_effects([FsWrite(ws), FsRead(ws + "/.git"), FsRead("/opt")], work_host="/srv")
    argv = build_bwrap_command(policy, ["true"], bwrap=BW)
    rw = _pairs(argv, "--bind")
    assert rw == [("/srv", "/work"), (ws, ws)]
    ro = _pairs(argv, "--ro-bind")
    assert ("/opt", "/opt") in ro and (ws + "/.git", ws + "/.git") in ro
    i_rw = argv.index(ws)
    i_ro = argv.index(ws + "/.git")
    assert i_rw < i_ro, "the narrower read-only bind must be applied after its writable parent"
    assert [a for i, a in enumerate(argv) if i and argv[i - 1] == "--tmpfs"] == ["/tmp"]


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
