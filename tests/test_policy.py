"""Unit tests: effects, from_effects, JSON round trip and rejection, validation, the plan."""

from __future__ import annotations

import json
import os
import sys

import pytest

from isolation import (
    Bind,
    CommandNotExecutable,
    CommandNotFound,
    Cost,
    EffectSet,
    Fallible,
    FsRead,
    FsWrite,
    IsolationPolicy,
    Llm,
    Network,
    NonDeterministic,
    PolicyError,
    Process,
    Pure,
    Unknown,
    build_plan,
)
from isolation.effects import effect_from_name
from isolation.policy import DEFAULT_ENV_ALLOWLIST, python_paths


def test_effect_set_is_immutable_hashable_and_normalizes_classes() -> None:
    a = EffectSet.of([Network, FsRead("/data")])
    b = EffectSet.of([FsRead("/data"), Network()])
    assert a == b and hash(a) == hash(b)
    assert Network in a and Network() in a and Pure not in a
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.effects = frozenset()  # type: ignore[misc]


def test_effect_names() -> None:
    assert effect_from_name("network") == Network()
    assert effect_from_name("NonDeterministic") == NonDeterministic()
    with pytest.raises(PolicyError, match="unknown effect 'teleport'"):
        effect_from_name("teleport")


@pytest.mark.parametrize("effect", [Pure, Fallible, Llm("gpt"), NonDeterministic, Process, Cost(5), Unknown])
def test_every_other_effect_gives_the_strict_baseline(effect: object) -> None:
    assert IsolationPolicy.from_effects([effect]) == IsolationPolicy()


def test_from_effects_maps_network_and_paths() -> None:
    p = IsolationPolicy.from_effects([Network, FsRead("/usr/share"), FsWrite("/tmp/out/")])
    assert p.network is True
    assert p.ro_binds == (Bind("/usr/share", "/usr/share"),)
    assert p.rw_binds == (Bind("/tmp/out", "/tmp/out"),)
    assert p.work_host is None
    assert p.env_allowlist == DEFAULT_ENV_ALLOWLIST


def test_json_round_trip() -> None:
    p = IsolationPolicy(
        ro_binds=[Bind("/a", "/b")], rw_binds=[Bind("/c", "/c")], work_host="/w", network=True, env_allowlist=["X"]
    )
    text = p.to_json()
    assert json.loads(text)["schema"] == 1
    assert IsolationPolicy.from_json(text) == p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "malformed JSON"),
        ("[]", "expected a JSON object"),
        ('{"schema": 1, "bogus": 2}', "unknown field"),
        ('{"schema": 99}', "unsupported schema"),
        ('{"network": true}', "unsupported schema"),
        ('{"schema": 1, "network": "yes"}', "network"),
        ('{"schema": 1, "ro_binds": [{"host": "/a"}]}', "ro_binds"),
        ('{"schema": 1, "ro_binds": "/a"}', "must be a list"),
        ('{"schema": 1, "rw_binds": [{"host": "rel", "sandbox": "/x"}]}', "not absolute"),
        ('{"schema": 1, "env_allowlist": ["A=B"]}', "invalid variable"),
        ('{"schema": 1, "env_allowlist": "A"}', "list of names"),
    ],
)
def test_json_rejection_is_typed(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        IsolationPolicy.from_json(text)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("relative/path", "not absolute"),
        ("/a\x00b", "NUL"),
        ("/a/../b", "'..'"),
        ("/proc/1/root", "under /proc"),
    ],
)
def test_path_validation(path: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        IsolationPolicy.from_effects([FsRead(path)])


def test_paths_are_normalized_and_reserved_targets_refused() -> None:
    assert IsolationPolicy.from_effects([FsRead("//usr//share/./")]).ro_binds == (Bind.same("/usr/share"),)
    with pytest.raises(PolicyError, match="inside /dev"):
        IsolationPolicy(ro_binds=[Bind("/x", "/dev/x")])
    with pytest.raises(PolicyError, match="sandbox root"):
        IsolationPolicy(rw_binds=[Bind("/x", "/")])
    with pytest.raises(PolicyError, match="two different host paths"):
        IsolationPolicy(ro_binds=[Bind("/x", "/t")], rw_binds=[Bind("/y", "/t")])


def test_missing_bind_source_names_the_path(tmp_path: object) -> None:
    missing = os.path.join(str(tmp_path), "nope")
    with pytest.raises(PolicyError, match=f"{missing} does not exist"):
        build_plan(IsolationPolicy.from_effects([FsRead(missing)]), ["true"])
    with pytest.raises(PolicyError, match="work directory"):
        build_plan(IsolationPolicy(work_host=missing), ["true"])


def _targets(plan: object) -> list[tuple[str, str]]:
    return [(m.kind, m.target) for m in plan.mounts]  # type: ignore[attr-defined]


def test_system_view_is_minimal() -> None:
    plan = build_plan(IsolationPolicy(), ["true"])
    targets = {t for _, t in _targets(plan)}
    assert {"/usr", "/etc/ld.so.cache", "/etc/passwd", "/etc/group", "/proc", "/dev", "/tmp", "/work"} <= targets
    for hidden in ("/root", "/home", "/srv", "/var", "/mnt", "/etc", "/etc/shadow", "/etc/resolv.conf", "/opt"):
        assert hidden not in targets
    assert "/etc/resolv.conf" in {t for _, t in _targets(build_plan(IsolationPolicy(network=True), ["true"]))}


def test_narrower_read_only_bind_comes_after_writable_parent(tmp_path: object) -> None:
    ws = str(tmp_path)
    os.makedirs(os.path.join(ws, ".git"))
    os.makedirs(os.path.join(ws, "out"))
    policy = IsolationPolicy.from_effects([FsRead(ws + "/.git"), FsWrite(ws), FsRead("/opt"), FsWrite(ws + "/out")])
    kinds = [(k, t) for k, t in _targets(build_plan(policy, ["true"])) if t.startswith(ws) or t == "/opt"]
    assert kinds.index(("rw-bind", ws)) < kinds.index(("ro-bind", ws + "/.git"))
    assert ("rw-bind", ws + "/out") in kinds


def test_env_is_cleared_except_allowlist() -> None:
    environ = {"LANG": "C.UTF-8", "API_TOKEN": "s3cret", "PATH": "/evil", "MYVAR": "1"}
    plan = build_plan(IsolationPolicy.from_effects([], env_allowlist=["MYVAR"]), ["true"], environ=environ)
    env = plan.env_dict
    assert env["HOME"] == "/work" and env["USER"] == "nobody" and env["MYVAR"] == "1" and env["LANG"] == "C.UTF-8"
    assert "API_TOKEN" not in env and env["PATH"] != "/evil"
    assert "API_TOKEN" in plan.env_denied and "API_TOKEN" in plan.secret_like_denied()


def test_invisible_executable_is_refused_with_the_effect_that_exposes_it(tmp_path: object) -> None:
    tool = os.path.join(str(tmp_path), "tool")
    with open(tool, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(tool, 0o755)
    with pytest.raises(CommandNotFound, match=rf"{tool} is not visible.*FsRead\('{tmp_path}'\)"):
        build_plan(IsolationPolicy(), [tool])
    build_plan(IsolationPolicy.from_effects([FsRead(str(tmp_path))]), [tool])
    with pytest.raises(CommandNotFound, match="not found"):
        build_plan(IsolationPolicy(), ["definitely-not-a-command-xyz"])
    with pytest.raises(CommandNotExecutable):
        build_plan(IsolationPolicy(), ["/usr"])


def test_symlinked_executables_resolve_inside_the_view() -> None:
    plan = build_plan(IsolationPolicy(), ["sh"])
    found = plan.find_executable("sh")
    assert found is not None and found[1].startswith("/usr/")
    assert plan.host_path("/bin/true") == "/usr/bin/true"


def test_with_python_exposes_the_running_interpreter() -> None:
    policy = IsolationPolicy().with_python()
    for p in python_paths():
        assert Bind.same(p) in policy.ro_binds
    build_plan(policy, [sys.executable])
