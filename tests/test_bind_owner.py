"""Issue 15 item 4: `plan` warns when a writable bind belongs to another uid than the
one the sandbox writes as, and such a bind really is not writable (the warning is true);
a bind owned by that uid gets no warning and is writable (the control)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.security

ROOT = os.geteuid() == 0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETHER_")}
    return subprocess.run(
        [sys.executable, "-m", "isolation", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.fixture
def foreign_dir() -> Iterator[str]:
    """A directory owned by another uid: as root, a fresh one given to uid 2000 (an sdist's
    owner); unprivileged, root's /usr/lib (a run cannot write there either way)."""
    if not ROOT:
        yield "/usr/lib"
        return
    path = tempfile.mkdtemp(prefix="isolation-owner-")
    os.chmod(path, 0o755)
    os.chown(path, 2000, 2000)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def own_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="isolation-owner-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_plan_warns_about_a_foreign_owned_writable_bind(foreign_dir: str, backend: str) -> None:
    owner = os.stat(foreign_dir).st_uid
    r = cli("plan", "--backend", backend, "--json", "--write", foreign_dir, "--", "true")
    assert r.returncode == 0, r.stderr
    warnings = json.loads(r.stdout)["warnings"]
    assert len(warnings) == 1 and f"owned by uid {owner}" in warnings[0], warnings
    assert f"host uid {os.geteuid()}" in warnings[0] and f"chown -R {os.geteuid()} {foreign_dir}" in warnings[0]
    text = cli("plan", "--backend", backend, "--write", foreign_dir, "--", "true").stdout
    assert f"WARNING:   writable bind {foreign_dir}" in text
    # The warning is true: the write fails inside.
    r = cli("run", "--backend", backend, "--write", foreign_dir, "--", "touch", f"{foreign_dir}/isolation-owner-probe")
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.returncode, r.stderr)
    assert not os.path.exists(f"{foreign_dir}/isolation-owner-probe")
    if ROOT:  # the fix the warning names works (only root may give a directory away)
        fix = warnings[0].split("(chown -R ", 1)[1].split(")", 1)[0].split()
        subprocess.run(["chown", "-R", *fix], check=True)
        assert json.loads(cli("plan", "--backend", backend, "--json", "--write", foreign_dir, "--", "true").stdout)[
            "warnings"
        ] == []
        r = cli("run", "--backend", backend, "--write", foreign_dir, "--", "touch", f"{foreign_dir}/made")
        assert r.returncode == 0, r.stderr


def test_control_an_own_writable_bind_gets_no_warning_and_is_writable(own_dir: str, backend: str) -> None:
    r = cli("plan", "--backend", backend, "--json", "--write", own_dir, "--", "true")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["warnings"] == []
    r = cli("run", "--backend", backend, "--write", own_dir, "--", "touch", f"{own_dir}/made")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(f"{own_dir}/made")
