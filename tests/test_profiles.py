"""Profiles: TOML maps to the same IsolationPolicy as JSON; every mistake names its line and key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isolation import Bind, FsRead, FsWrite, IsolationPolicy, Network, PolicyError
from isolation.limits import Limits
from isolation.profiles import find_profile_file, load_profile, load_profiles, parse_profiles

FULL = """\
# the project's sandboxes
[profile.build]
description = "build the wheel"
effects = ["network", "llm"]
read = ["/usr/share", { host = "/etc/hostname", sandbox = "/srv/hostname" }]
write = ["out"]
work = "."
env = ["PIP_INDEX_URL"]
seccomp = "default"

[profile.build.limits]
memory = "512M"
cpu_seconds = 60
wall_timeout = 30.5

[profile.strict]
"""


def test_profile_maps_to_the_same_policy_as_json(tmp_path: Path) -> None:
    (tmp_path / "isolation.toml").write_text(FULL)
    profiles = load_profiles(str(tmp_path / "isolation.toml"))
    assert sorted(profiles) == ["build", "strict"]
    build = profiles["build"]
    as_json = {
        "schema": 1,
        "ro_binds": [
            {"host": "/usr/share", "sandbox": "/usr/share"},
            {"host": "/etc/hostname", "sandbox": "/srv/hostname"},
        ],
        "rw_binds": [{"host": f"{tmp_path}/out", "sandbox": f"{tmp_path}/out"}],
        "work_host": str(tmp_path),
        "network": True,
        "env_allowlist": ["LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "PIP_INDEX_URL"],
        "seccomp": "default",
        "limits": {"memory": 512 << 20, "cpu_seconds": 60, "wall_timeout": 30.5},
    }
    assert build.policy == IsolationPolicy.from_json(json.dumps(as_json))
    assert IsolationPolicy.from_json(build.policy.to_json()) == build.policy
    assert build.description == "build the wheel" and build.source.endswith("isolation.toml:2")
    assert Network() in build.effects and FsWrite(f"{tmp_path}/out") in build.effects
    assert build.policy.limits == Limits(memory=512 << 20, cpu_seconds=60, wall_timeout=30.5)
    assert profiles["strict"].policy == IsolationPolicy()


def test_effects_only_profile_equals_from_effects() -> None:
    text = '[profile.p]\neffects = ["network"]\nread = ["/data"]\nwrite = ["/srv/out"]\nenv = ["TOKEN_NAME"]\n'
    policy = parse_profiles(text)["p"].policy
    expected = IsolationPolicy.from_effects(
        [Network, FsRead("/data"), FsWrite("/srv/out")], env_allowlist=["TOKEN_NAME"]
    )
    assert policy == expected


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("[profile.a]\neffects = []\nnetwrok = true\n", 3, "netwrok"),
        ("colour = 1\n[profile.a]\n", 1, "colour"),
        ("[profile.a]\n\n[profile.a.limits]\nmemory = '1G'\nmemroy = '1G'\n", 5, "memroy"),
        ("[profile.a]\nlimits = { memory = '1G', cpus = 2 }\n", 2, "cpus"),
        ("[profile.a]\nlimits.cpus = 2\n", 2, "cpus"),
        ("[profile.a]\nread = [\n  '/data',\n  { host = '/x', sandbox = '/y', mode = 'rw' },\n]\n", 4, "mode"),
        ('[profile.a]\ndescription = """\nbogus = 1\n"""\n\n"bo gus" = 1\n', 6, "bo gus"),
        ("[profile.a]\n[profile.b]\n[profile.b.extra]\n", 3, "extra"),
    ],
)
def test_unknown_keys_name_the_key_and_its_line(text: str, line: int, key: str) -> None:
    with pytest.raises(PolicyError, match=rf"^p\.toml:{line}: unknown key '{key}'"):
        parse_profiles(text, source="p.toml")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[profile.a]\neffects = ['teleport']\n", 2, "unknown effect 'teleport'"),
        ("[profile.a]\n\neffects = 'network'\n", 3, "expected a list"),
        ("[profile.a]\nread = [1]\n", 2, "expected a path string"),
        ("[profile.a]\nseccomp = 'lenient'\n", 2, "unknown seccomp profile"),
        ("[profile.a]\nseccomp = 'none'\n", 2, "needs unsafe_no_seccomp"),
        ("[profile.a]\n[profile.a.limits]\nmemory = 'lots'\n", 2, "invalid size"),
        ("[profile.a]\nenv = ['A=B']\n", 2, "invalid variable name"),
        ("[profile.a]\nwrite = [{ host = '/x', sandbox = 'rel' }]\n", 2, "sandbox path must be absolute"),
        ("[profile.a]\nread = ['/proc/1/root']\n", 2, "under /proc"),
        ("profile = 3\n", 1, "expected tables"),
        ("[profile.a]\nread = [\n", 2, "invalid TOML"),
        ("[profile.a]\nread = [\n\n'x' = 1]\n", 4, "invalid TOML"),
    ],
)
def test_invalid_values_name_their_line(text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyError, match=rf"^p\.toml:{line}: .*{message}"):
        parse_profiles(text, source="p.toml")


def test_unsafe_no_seccomp_must_be_spelled_out() -> None:
    policy = parse_profiles("[profile.a]\nseccomp = 'none'\nunsafe_no_seccomp = true\n")["a"].policy
    assert policy.seccomp == "none" and policy.unsafe_no_seccomp


def test_relative_paths_are_against_the_files_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.toml").write_text("[profile.a]\nread = ['data', '../shared']\nwork = 'w'\n")
    monkeypatch.chdir("/")
    policy = load_profile("a", str(tmp_path / "sub" / "p.toml")).policy
    assert policy.ro_binds == (Bind.same(f"{tmp_path}/sub/data"), Bind.same(f"{tmp_path}/shared"))
    assert policy.work_host == f"{tmp_path}/sub/w"


def test_lookup_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyError, match="no isolation.toml in"):
        find_profile_file()
    (tmp_path / "isolation.toml").write_text("[profile.a]\n[profile.b]\n")
    assert load_profile("a").name == "a"
    with pytest.raises(PolicyError, match=r"no profile 'c' \(profiles: a, b\)"):
        load_profile("c")
    with pytest.raises(PolicyError, match="No such file"):
        load_profiles(str(tmp_path / "missing.toml"))


# -- CLI ---------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETHER_")}
    return subprocess.run(
        [sys.executable, "-m", "isolation", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_cli_plan_uses_the_profile_and_flags_extend_it(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "isolation.toml").write_text(
        '[profile.build]\neffects = ["network"]\nwrite = ["out"]\nenv = ["PIP_INDEX_URL"]\n'
        "[profile.build.limits]\nmax_open_files = 64\ncpu_seconds = 10\n"
    )
    r = cli("plan", "--json", "--backend", "bwrap", "--profile", "build", "--read", "/etc/hostname",
            "--env", "EXTRA", "--cpu-seconds", "5", "--", "true", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    policy = json.loads(r.stdout)["policy"]
    assert policy["network"] is True
    assert policy["rw_binds"] == [{"host": f"{tmp_path}/out", "sandbox": f"{tmp_path}/out"}]
    assert policy["ro_binds"] == [{"host": "/etc/hostname", "sandbox": "/etc/hostname"}]
    assert policy["env_allowlist"][-2:] == ["PIP_INDEX_URL", "EXTRA"]
    assert policy["limits"]["cpu_seconds"] == 5 and policy["limits"]["max_open_files"] == 64


def test_cli_profile_file_and_refusals(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text("[profile.net]\neffects = ['network']\n")
    # The whole file is checked, not only the profile asked for: a typo anywhere fails loudly.
    (tmp_path / "bad.toml").write_text("[profile.net]\neffects = ['network']\n\n[profile.bad]\nnetwrok = true\n")
    r = cli("plan", "--json", "--backend", "bwrap", "--profile-file", "p.toml", "--profile", "net", "--", "true",
            cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0 and json.loads(r.stdout)["network"] is True
    for args, message in [
        (["--profile-file", "bad.toml", "--profile", "net"], "bad.toml:5: unknown key 'netwrok' in [profile.bad]"),
        (["--profile", "net"], "no isolation.toml in"),
        (["--profile-file", "p.toml"], "--profile-file needs --profile NAME"),
        (["--profile-file", "p.toml", "--profile", "net", "--policy", "x.json"], "choose one"),
    ]:
        r = cli("run", "--backend", "bwrap", *args, "--", "true", cwd=tmp_path)
        assert r.returncode == 125 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_cli_run_enforces_the_profile(tmp_path: Path, backend: str) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "isolation.toml").write_text("[profile.w]\nwrite = ['out']\n[profile.r]\nread = ['out']\n")
    script = f"echo made > {tmp_path}/out/f && cat {tmp_path}/out/f"
    r = cli("run", "--backend", backend, "--profile", "w", "--", "sh", "-c", script, cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "made\n"), r.stderr
    r = cli("run", "--backend", backend, "--profile", "r", "--", "sh", "-c", f"echo x > {tmp_path}/out/g", cwd=tmp_path)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not (tmp_path / "out" / "g").exists()
