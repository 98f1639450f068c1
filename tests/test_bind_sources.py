"""A bind never carries a kernel file system into the sandbox.

Binds are recursive: a bound directory holding a procfs (or sysfs...) submount, or
a bound symlink that leads to /proc, would show the host's processes inside. Such
a bind is refused with a PolicyError naming the file system, at plan time and on
every run (mounts change between runs). Ordinary directories, and directories
with an ordinary submount (tmpfs), still bind and their content is visible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import isolation
from isolation import FsRead, IsolationPolicy, PolicyError
from isolation.paths import KERNEL_FS_TYPES, check_no_kernel_fs

pytestmark = pytest.mark.security

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_symlink_to_proc_is_refused_at_plan_time_and_on_every_run(backend: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("ordinary content")
    link = tmp_path / "link"
    link.symlink_to(data)
    policy = IsolationPolicy.from_effects([FsRead(str(link))])
    # Control: while the link leads to an ordinary directory, it binds and its content is seen.
    r = isolation.run(["cat", f"{link}/f"], policy, backend=backend)
    assert (r.returncode, r.stdout) == (0, b"ordinary content")
    # The same policy, once the link leads to /proc: refused before anything runs.
    link.unlink()
    link.symlink_to("/proc")
    with pytest.raises(PolicyError, match=rf"{link} \(it resolves to /proc\) is on a proc file system"):
        isolation.build_plan(policy, ["true"])
    with pytest.raises(PolicyError, match="resolves to /proc"):
        isolation.run(["ls", f"{link}/1"], policy, backend=backend)


def test_the_cli_refuses_a_symlink_to_proc(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to("/proc")
    env = {**os.environ, "PYTHONPATH": REPO}
    r = subprocess.run(
        [sys.executable, "-m", "isolation", "run", "--read", str(link), "--", "ls", f"{link}/1"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 125, r
    assert "proc file system" in r.stderr and r.stdout == ""


def test_every_kernel_interface_fs_is_refused_as_source_and_as_submount() -> None:
    """The decision on a synthetic mount table, for the types no test can mount in both lanes."""
    for fs in sorted(KERNEL_FS_TYPES):
        with pytest.raises(PolicyError, match=f"on a {fs} file system"):
            check_no_kernel_fs([("ro_binds", "/k/x")], [("/", "ext4"), ("/k", fs)])
        with pytest.raises(PolicyError, match=f"holds a {fs} file system mounted at /d/sub/k"):
            check_no_kernel_fs([("rw_binds", "/d")], [("/", "ext4"), ("/d/sub/k", fs)])
    # Control: ordinary file systems, as source or submount, and a kernel fs mounted
    # over with an ordinary one (the top of the stack is what the path is on).
    check_no_kernel_fs([("ro_binds", "/d")], [("/", "ext4"), ("/d/t", "tmpfs"), ("/e/p", "proc")])
    check_no_kernel_fs([("ro_binds", "/k/x")], [("/", "ext4"), ("/k", "proc"), ("/k", "tmpfs")])


# Root lane: real submounts in a private mount namespace of a helper caller, so the
# host's mount table never changes. The policy is built before the mounts appear:
# the refusal comes from the per-run check.
SUBMOUNTS = r"""
import json, os, subprocess, sys
import isolation
from isolation import FsRead, IsolationPolicy, PolicyError

backend, d = sys.argv[1], sys.argv[2]
policy = IsolationPolicy.from_effects([FsRead(d)])
out = {}

def attempt(name, path):
    try:
        r = isolation.run(["cat", path], policy, backend=backend)
        out[name] = [r.returncode, r.stdout.decode()]
    except PolicyError as e:
        out[name] = ["PolicyError", str(e)]

# The tmpfs comes first: a sandbox the native backend prepared ahead of demand holds
# the bind as it was then, and a submount added later is not in it (nor needed here).
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", f"{d}/t"], check=True)
with open(f"{d}/t/inner", "w") as f:
    f.write("on tmpfs")
attempt("plain", f"{d}/f")
attempt("tmpfs", f"{d}/t/inner")
for fs in ("proc", "sysfs", "cgroup2"):
    subprocess.run(["mount", "-t", fs, fs, f"{d}/k"], check=True)
    attempt(fs, f"{d}/k/" + {"proc": "1/cmdline", "sysfs": "kernel/uevent_seqnum", "cgroup2": "cgroup.procs"}[fs])
    try:
        isolation.build_plan(policy, ["true"])
        out[fs + "-plan"] = "planned"
    except PolicyError as e:
        out[fs + "-plan"] = str(e)
    subprocess.run(["umount", f"{d}/k"], check=True)
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root (the symlink and synthetic tests cover this lane)")
def test_kernel_fs_submounts_are_refused_and_ordinary_ones_bind(backend: str, tmp_path: Path) -> None:
    d = tmp_path / "bound"
    for sub in ("t", "k"):
        (d / sub).mkdir(parents=True)
    (d / "f").write_text("ordinary content")
    env = {**os.environ, "PYTHONPATH": REPO}
    r = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SUBMOUNTS, backend, str(d)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # Controls: a plain directory and one with a tmpfs submount bind, content visible inside.
    assert out["plain"] == [0, "ordinary content"]
    assert out["tmpfs"] == [0, "on tmpfs"]
    for fs in ("proc", "sysfs", "cgroup2"):
        assert out[fs][0] == "PolicyError", out[fs]
        assert f"holds a {fs} file system mounted at {d}/k" in out[fs][1]
        assert f"holds a {fs} file system mounted at {d}/k" in out[fs + "-plan"]
