"""The sandbox's shape has one source: the plan. Its `proc-ro` entries (the read-only
/proc covers) and `device` entries (the /dev nodes) are what each backend builds, no
more: a plan without one gets a sandbox without it."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator

import attrs
import pytest
from commands import PYTHON

import isolation
from isolation import IsolationPolicy, SandboxSetupError, sysview
from isolation import plan as plan_mod
from isolation.backends import bwrap as bwrap_mod
from isolation.plan import Mount, build_plan, with_parts

pytestmark = pytest.mark.security

# Each path: what is there (a character device with its numbers, a directory, another
# file, or the error lstat raised), whether a mount sits on it, whether that is read-only.
SHAPE = """
import json, os, stat, sys
points = {line.split()[4] for line in open("/proc/self/mountinfo")}
out = {}
for p in sys.argv[1:]:
    try:
        st = os.lstat(p)
    except OSError as e:
        out[p] = [type(e).__name__]
        continue
    if stat.S_ISCHR(st.st_mode):
        what = ["chr", os.major(st.st_rdev), os.minor(st.st_rdev)]
    else:
        what = ["dir" if stat.S_ISDIR(st.st_mode) else "other"]
    out[p] = [*what, p in points, bool(os.statvfs(p).f_flag & os.ST_RDONLY)]
print(json.dumps(out))
"""

COVERS = [f"/proc/{n}" for n in sysview.PROC_READ_ONLY]
NODES = [f"/dev/{n}" for n in sysview.DEV_NODES]
# What the variant plan leaves out: a cover this kernel has, and a node.
DROPPED = ("/proc/sys", "/dev/full")


def _node(path: str) -> list[object]:
    st = os.stat(path)
    return ["chr", os.major(st.st_rdev), os.minor(st.st_rdev)]


def test_the_plan_carries_the_covers_and_the_nodes() -> None:
    plan = build_plan(IsolationPolicy(), ["true"])
    kinds = [(m.kind, m.target) for m in plan.mounts]
    proc = kinds.index(("proc", "/proc"))
    assert kinds[proc + 1 : proc + 1 + len(COVERS)] == [("proc-ro", c) for c in COVERS]
    dev = kinds.index(("dev", "/dev"))
    assert kinds[dev + 1 : dev + 1 + len(NODES)] == [("device", n) for n in NODES]
    assert all(m.source == m.target for m in plan.mounts if m.kind == "device")  # the host's own node
    shown = {(m["kind"], m["target"]): m["mode"] for m in plan.to_dict()["mounts"]}  # type: ignore[attr-defined]
    assert all(shown[("proc-ro", c)] == "ro" for c in COVERS) and all(shown[("device", n)] == "ro" for n in NODES)
    parts = dict((m.kind, p) for m, p in with_parts(plan.mounts) if p)
    assert [m.target for m in parts["proc"]] == COVERS and [m.target for m in parts["dev"]] == NODES


def test_a_part_away_from_its_file_system_is_refused() -> None:
    plan = build_plan(IsolationPolicy(), ["true"])
    stray = (*plan.mounts, Mount("device", "/dev/full", source="/dev/full", origin="sandbox"))
    with pytest.raises(AssertionError, match="does not follow a dev"):
        with_parts(stray)
    with pytest.raises(AssertionError, match="does not follow a dev"):
        bwrap_mod.plan_to_bwrap_args(attrs.evolve(plan, mounts=stray), "/usr/bin/bwrap")
    i = [m.kind for m in plan.mounts].index("dev")
    elsewhere = Mount("device", "/etc/null", source="/dev/null", origin="sandbox")
    with pytest.raises(AssertionError, match="not an entry of dev /dev"):
        with_parts((*plan.mounts[: i + 1], elsewhere, *plan.mounts[i + 1 :]))
    assert len(with_parts(plan.mounts)) == len(plan.mounts) - len(COVERS) - len(NODES)  # control


@pytest.fixture
def plan_without() -> Iterator[None]:
    """While it is active, plans lack the entries DROPPED."""
    original = plan_mod.policy_mounts

    def without(policy: IsolationPolicy) -> tuple[Mount, ...]:
        return tuple(m for m in original(policy) if m.target not in DROPPED)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_mod, "policy_mounts", without)
        yield


def _shape(backend: str, variant: str) -> dict[str, list[object]]:
    # `variant` makes the command, hence every cached plan of it, this test's own.
    res = isolation.run([PYTHON, "-c", SHAPE + f"# {variant}\n", *COVERS, *NODES], backend=backend, timeout=60)
    assert res.backend == backend and res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return dict(json.loads(res.stdout))


def test_each_cover_is_read_only_and_each_node_present(backend: str) -> None:
    out = _shape(backend, "full")
    for c in COVERS:
        if os.path.exists(c):  # this kernel has it (sysrq-trigger needs CONFIG_MAGIC_SYSRQ)
            assert out[c][-2:] == [True, True], (c, out[c])
        else:
            assert out[c] == ["FileNotFoundError"], (c, out[c])
    for n in NODES:
        assert out[n][:3] == _node(n) and out[n][3] is True, (n, out[n])


def test_a_plan_without_an_entry_gets_no_such_cover_or_node(backend: str, plan_without: None) -> None:
    out = _shape(backend, "without")
    # The entries left out: /proc/sys is the fresh /proc's own, writable directory, no mount on it;
    # /dev/full is no device: absent, in both backends' /dev (each built from the plan).
    assert out["/proc/sys"] == ["dir", False, False], out["/proc/sys"]
    assert out["/dev/full"] == ["FileNotFoundError"]
    # Control: the entries still in the plan are there.
    for c in COVERS:
        if c not in DROPPED and os.path.exists(c):
            assert out[c][-2:] == [True, True], (c, out[c])
    for n in NODES:
        if n not in DROPPED:
            assert out[n][:3] == _node(n), (n, out[n])


def test_native_refuses_a_part_away_from_its_file_system() -> None:
    """The C builds a part only with its file system: one elsewhere fails the setup."""
    original = plan_mod.policy_mounts

    def stray(policy: IsolationPolicy) -> tuple[Mount, ...]:
        return (*original(policy), Mount("device", "/dev/full", source="/dev/full", origin="sandbox"))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_mod, "policy_mounts", stray)
        with pytest.raises(SandboxSetupError) as info:
            isolation.run(["true", "# stray"], backend="native", timeout=60)
    assert info.value.step == "mount order" and info.value.path == "/dev/full"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # the host's node is untouched
