"""Issue 15 items 1-3: a bare command name runs the file the caller's shell would run
(the caller's PATH), or is refused naming the change that makes it run; every such hint,
followed, gives a run that succeeds; `--python` and `--cwd` on the CLI.

Layouts like a venv (bin/python3 a symlink to /usr/bin/python3, pyvenv.cfg above
it) and a cargo-like tool directory are made in tmp and put first in PATH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from isolation import CommandNotVisible, IsolationPolicy, build_plan, run
from isolation.policy import python_paths

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHOW = "import sys; print(sys.prefix); print(sys.version)"


def cli(*args: str, path: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETHER_")}
    env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "isolation", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False,
    )  # fmt: skip


def readable_tmp(tmp_path: Path) -> Path:
    """A directory under tmp_path (created by the caller, so writable as the caller)."""
    d = tmp_path / "t"
    d.mkdir()
    return d


def make_venv(root: Path) -> Path:
    """A venv as `python3 -m venv` lays it out: bin/python3 -> /usr/bin/python3 and pyvenv.cfg."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3").symlink_to("/usr/bin/python3")
    version = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n")
    return root / "bin" / "python3"


def make_tool(directory: Path, name: str, says: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!/bin/sh\necho {says}\n")
    tool.chmod(0o755)
    return tool


def hinted_flags(stderr: str) -> list[str]:
    """The flags a refusal's hint names ("make it visible with --python --read /x")."""
    m = re.search(r"(?:make it visible|bind it) with ((?:--\w+(?: /\S+)?\s?)+)", stderr)
    assert m is not None, stderr
    return m.group(1).split()


# -- item 1: the caller's file runs, or the run is refused ---------------------------------


def test_a_venv_python_first_in_path_is_refused_with_the_flag_that_runs_it(tmp_path: Path, backend: str) -> None:
    venv = tmp_path / "venv"
    make_venv(venv)
    path = f"{venv}/bin:{SYSTEM_PATH}"
    outside = subprocess.run(
        ["python3", "-c", SHOW], capture_output=True, text=True, env={"PATH": path}, check=True
    ).stdout  # fmt: skip
    assert outside.splitlines()[0] == str(venv)  # the control: the caller's python3 is the venv's

    r = cli("run", "--backend", backend, "--", "python3", "-c", SHOW, path=path)
    assert r.returncode == 125, r.stderr
    assert f"{venv}/bin/python3 is not visible" in r.stderr and "/usr/bin/python3, another program" in r.stderr
    flags = hinted_flags(r.stderr)
    assert flags == ["--read", str(venv)], r.stderr  # the venv root: the interpreter finds pyvenv.cfg there

    r = cli("run", "--backend", backend, *flags, "--", "python3", "-c", SHOW, path=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == outside  # that very file ran: same prefix (the venv), same version


def test_the_api_resolves_on_the_callers_path_and_names_api_calls(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    make_venv(venv)
    environ = {"PATH": f"{venv}/bin:{SYSTEM_PATH}"}
    with pytest.raises(CommandNotVisible, match=rf"make it visible with FsRead\('{venv}'\)") as exc:
        build_plan(IsolationPolicy(), ["python3"], environ=environ)
    assert "--read" not in str(exc.value)
    plan = build_plan(IsolationPolicy().with_read(str(venv)), ["python3"], environ=environ)
    assert plan.program is not None
    assert (plan.program.host, plan.program.sandbox) == (f"{venv}/bin/python3", f"{venv}/bin/python3")
    assert plan.program.found_by == "caller PATH" and plan.program.path_added == f"{venv}/bin"
    assert plan.env_dict["PATH"] == f"{venv}/bin:{SYSTEM_PATH}"  # so the sandbox's own lookup agrees
    # Without a conflict nothing is added: the sandbox's PATH already finds the caller's file.
    plain = build_plan(IsolationPolicy(), ["python3"], environ={"PATH": SYSTEM_PATH})
    assert plain.program is not None and plain.program.path_added is None
    assert plain.env_dict["PATH"] == SYSTEM_PATH


def test_a_fake_python3_earlier_in_path_runs_or_is_refused_never_usr_bin(tmp_path: Path, backend: str) -> None:
    tools = tmp_path / "shadow"
    make_tool(tools, "python3", "the-callers-python3")
    path = f"{tools}:{SYSTEM_PATH}"
    r = cli("run", "--backend", backend, "--", "python3", "-c", "print('usr-bin-python3')", path=path)
    assert r.returncode == 125 and "usr-bin-python3" not in r.stdout, (r.stdout, r.stderr)
    flags = hinted_flags(r.stderr)
    assert flags == ["--read", str(tools)]
    r = cli("run", "--backend", backend, *flags, "--", "python3", "-c", "print('usr-bin-python3')", path=path)
    assert (r.returncode, r.stdout) == (0, "the-callers-python3\n"), r.stderr


def test_plan_json_and_the_audit_record_show_the_resolved_file(tmp_path: Path) -> None:
    tools = tmp_path / "shadow"
    tool = make_tool(tools, "python3", "mine")
    path = f"{tools}:{SYSTEM_PATH}"
    r = cli("plan", "--backend", "bwrap", "--json", "--read", str(tools), "--", "python3", path=path)
    assert r.returncode == 0, r.stderr
    prog = json.loads(r.stdout)["program"]
    assert prog == {
        "name": "python3", "host": str(tool), "sandbox": str(tool), "found_by": "caller PATH", "path_added": str(tools)
    }  # fmt: skip
    r = cli("plan", "--backend", "bwrap", "--read", str(tools), "--", "python3", path=path)
    assert f"program:   {tool} (found on your PATH)" in r.stdout
    log = tmp_path / "audit.jsonl"
    r = cli("run", "--backend", "bwrap", "--read", str(tools), "--audit-log", str(log), "--", "python3", path=path)
    assert (r.returncode, r.stdout) == (0, "mine\n"), r.stderr
    assert json.loads(log.read_text())["plan"]["program"]["host"] == str(tool)


def test_a_name_the_caller_lacks_is_found_on_the_sandbox_path(tmp_path: Path) -> None:
    plan = build_plan(IsolationPolicy(), ["sh"], environ={"PATH": str(tmp_path)})
    assert plan.program is not None and plan.program.found_by == "sandbox PATH"


# -- item 2: each kind of hint, followed, works --------------------------------------------


def test_a_tool_dir_outside_the_sandbox_path_runs_once_read(tmp_path: Path, backend: str) -> None:
    """The ~/.cargo/bin case: --read makes it visible, and the sandbox's PATH gets the directory."""
    bin_dir = tmp_path / "home" / ".cargo" / "bin"
    make_tool(bin_dir, "mytool", "tool-ran")
    path = f"{SYSTEM_PATH}:{bin_dir}"  # last in the caller's PATH, absent from the sandbox's
    r = cli("run", "--backend", backend, "--", "mytool", path=path)
    assert r.returncode == 125 and "mytool" in r.stderr
    flags = hinted_flags(r.stderr)
    r = cli("run", "--backend", backend, *flags, "--", "mytool", path=path)
    assert (r.returncode, r.stdout) == (0, "tool-ran\n"), r.stderr
    r = cli("run", "--backend", backend, *flags, "--", "sh", "-c", 'echo "$PATH"', path=path)
    assert r.stdout == f"{SYSTEM_PATH}\n"  # only the command itself needed the directory


def test_the_running_python_gets_the_python_flag_and_runs_the_same(backend: str) -> None:
    exe = sys.executable
    path = f"{os.path.dirname(exe)}:{SYSTEM_PATH}"
    name = os.path.basename(exe)
    r = cli("run", "--backend", backend, "--", name, "-c", SHOW, path=path)
    assert r.returncode == 125, r.stderr
    assert "--python" in r.stderr and "with_python" not in r.stderr
    flags = hinted_flags(r.stderr)
    assert flags[0] == "--python"
    r = cli("run", "--backend", backend, *flags, "--", name, "-c", SHOW, path=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{sys.prefix}\n{sys.version}\n"


def test_the_api_hint_for_the_running_python_is_with_python() -> None:
    exe = sys.executable
    environ = {"PATH": f"{os.path.dirname(exe)}:{SYSTEM_PATH}"}
    with pytest.raises(CommandNotVisible, match=r"policy\.with_python\(\)") as exc:
        build_plan(IsolationPolicy(), [os.path.basename(exe)], environ=environ)
    assert "--python" not in str(exc.value)
    build_plan(IsolationPolicy().with_python(), [os.path.basename(exe)], environ=environ)


# -- --python ------------------------------------------------------------------------------


def test_python_flag_equals_with_python_and_the_interpreter_is_the_same(backend: str) -> None:
    probe = "import sys; print(sys.version); print(sys.prefix); print(sys.base_prefix)"
    r = cli("plan", "--backend", "bwrap", "--json", "--python", "--", sys.executable, path=SYSTEM_PATH)
    assert r.returncode == 0, r.stderr
    binds = json.loads(r.stdout)["policy"]["ro_binds"]
    assert binds == json.loads(IsolationPolicy().with_python().to_json())["ro_binds"]
    assert {b["host"] for b in binds} == set(python_paths())
    r = cli("run", "--backend", backend, "--python", "--", sys.executable, "-c", probe, path=SYSTEM_PATH)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{sys.version}\n{sys.prefix}\n{sys.base_prefix}\n"
    res = run([sys.executable, "-c", probe], IsolationPolicy().with_python(), backend=backend)
    assert res.stdout.decode() == r.stdout


# -- item 3: --cwd ------------------------------------------------------------------------


def test_cwd_must_be_visible_and_the_hint_works(tmp_path: Path, backend: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "setup.py").write_text("")
    make_tool(src, "run.sh", "relative-ran")
    r = cli("run", "--backend", backend, "--cwd", str(src), "--", "ls", path=SYSTEM_PATH)
    assert r.returncode == 125 and f"--read {src}" in r.stderr and f"--write {src}" in r.stderr, r.stderr
    flags = hinted_flags(r.stderr)[:2]
    r = cli("run", "--backend", backend, *flags, "--cwd", str(src), "--", "sh", "-c", "pwd; ls", path=SYSTEM_PATH)
    assert (r.returncode, r.stdout) == (0, f"{src}\nrun.sh\nsetup.py\n"), r.stderr
    r = cli("run", "--backend", backend, *flags, "--cwd", ".", "--", "./run.sh", path=SYSTEM_PATH, cwd=str(src))
    assert (r.returncode, r.stdout) == (0, "relative-ran\n"), r.stderr
    # Read-only stays read-only: --cwd does not make the directory writable.
    r = cli("run", "--backend", backend, *flags, "--cwd", str(src), "--", "touch", "new", path=SYSTEM_PATH)
    assert r.returncode != 0 and not (src / "new").exists()


def test_cwd_inside_the_work_bind_is_its_sandbox_path(tmp_path: Path, backend: str) -> None:
    (tmp_path / "sub").mkdir()
    r = cli("run", "--backend", backend, "--work", str(tmp_path), "--cwd", str(tmp_path / "sub"), "--", "pwd",
            path=SYSTEM_PATH)  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "/work/sub\n"), r.stderr
    r = cli("plan", "--backend", "bwrap", "--json", "--work", str(tmp_path), "--cwd", str(tmp_path), "--", "true",
            path=SYSTEM_PATH)  # fmt: skip
    assert json.loads(r.stdout)["cwd"] == "/work"


def test_with_python_exposes_the_prefixes_and_the_loaded_libpython() -> None:
    from isolation.policy import _loaded_libpython

    plan = build_plan(IsolationPolicy().with_python(), [sys.executable])
    for needed in (sys.prefix, sys.base_prefix, sys.exec_prefix, *_loaded_libpython()):
        assert plan.sandbox_path_of(os.path.realpath(needed)) is not None, needed
    assert plan.program is not None and plan.program.host == os.path.realpath(sys.executable)


def test_a_repeated_run_follows_the_callers_path_when_it_changes(tmp_path: Path, backend: str) -> None:
    """Plans and recipes are cached per command and PATH: a new file earlier in the same
    PATH must not leave the old one running."""
    first, second = tmp_path / "first", tmp_path / "second"
    make_tool(second, "pick-me", "second")
    policy = IsolationPolicy().with_read(str(first.parent))
    first.mkdir()
    os.environ["PATH"], saved = f"{first}:{second}:{SYSTEM_PATH}", os.environ["PATH"]
    try:
        assert run(["pick-me"], policy, backend=backend).stdout == b"second\n"
        make_tool(first, "pick-me", "first")
        assert run(["pick-me"], policy, backend=backend).stdout == b"first\n"
    finally:
        os.environ["PATH"] = saved


def test_a_real_venv_of_the_tests_python_runs_as_outside_once_the_hint_is_followed(
    tmp_path: Path, backend: str
) -> None:
    """The issue's case: a venv (here of this interpreter: pyenv's under /root as root,
    /usr/bin/python3 unprivileged) first in PATH. Refused with flags that, followed, give
    the same sys.version and sys.prefix inside as outside."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    path = f"{venv}/bin:{SYSTEM_PATH}"
    outside = subprocess.run(
        ["python3", "-c", SHOW], capture_output=True, text=True, env={"PATH": path}, check=True
    ).stdout  # fmt: skip
    assert outside.splitlines()[0] == str(venv)
    r = cli("run", "--backend", backend, "--", "python3", "-c", SHOW, path=path)
    assert r.returncode == 125, r.stderr
    flags = hinted_flags(r.stderr)
    assert flags[:2] == ["--read", str(venv)], r.stderr
    r = cli("run", "--backend", backend, *flags, "--", "python3", "-c", SHOW, path=path)
    assert (r.returncode, r.stdout) == (0, outside), r.stderr


def test_cli_hints_do_not_leak_into_api_calls_of_the_same_process(capsys: pytest.CaptureFixture[str]) -> None:
    from isolation.cli import main

    exe = sys.executable
    environ = {"PATH": f"{os.path.dirname(exe)}:{SYSTEM_PATH}"}
    assert main(["plan", "--backend", "bwrap", "--", "true"]) == 0
    capsys.readouterr()
    with pytest.raises(CommandNotVisible, match=r"policy\.with_python\(\)"):
        build_plan(IsolationPolicy(), [os.path.basename(exe)], environ=environ)
