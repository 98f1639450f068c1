"""Shared test matrix: every sandbox test runs against each real backend.

`ISOLATION_TEST_BACKENDS` (comma-separated, default "bwrap,native") narrows
the matrix for local work; CI runs the default, so no backend is skipped there.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pytest
from procs import child_pids, fd_table

ALL_BACKENDS = ("bwrap", "native")
BACKENDS = tuple(b for b in os.environ.get("ISOLATION_TEST_BACKENDS", ",".join(ALL_BACKENDS)).split(",") if b)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a real sandboxing backend."""
    return str(request.param)


@pytest.fixture
def host_lacking() -> Iterator[Callable[[str], None]]:
    """`host_lacking("userns,landlock-abi=5")`: this process's runs see a host lacking those
    features (SPEC as for tests/_with_host.py), until the next call or the end of the test.
    Applied in-process through `simulate_host`: nothing a production environment could set."""
    from _with_host import parse

    from isolation.backends.native import simulate_host

    with contextlib.ExitStack() as stack:

        def lacking(spec: str) -> None:
            stack.close()
            stack.enter_context(simulate_host(parse(spec)))

        yield lacking


# Who a command runs as in the native backend's host layout (no user namespace): a root
# caller's command becomes 65534 there, anyone else's stays the caller.
HOST_LAYOUT_UID = 65534 if os.geteuid() == 0 else os.geteuid()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, socket.socket]]:
    """A listening abstract unix socket of the host, as (name without the leading NUL, socket):
    what a sandbox must not reach without Network (abstract sockets belong to the netns)."""
    name = f"isolation-test-{uuid.uuid4().hex}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + name)
    srv.listen(8)
    yield name, srv
    srv.close()


@pytest.fixture
def host_layout_dir() -> Iterator[str]:
    """A directory (mode 0755, under /tmp) owned by the user a host-layout command runs as:
    pytest's tmp_path lies below a 0700 directory of the caller, which 65534 cannot enter."""
    path = tempfile.mkdtemp(prefix="isolation-test-", dir="/tmp")
    os.chmod(path, 0o755)
    if os.geteuid() == 0:
        os.chown(path, HOST_LAYOUT_UID, HOST_LAYOUT_UID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def no_leaks() -> Iterator[None]:
    """Requested by the sandbox lifecycle tests: at the end of the session, the test
    process has no child (zombie or alive), no descriptor it did not have before,
    and no cgroup of its sandboxes is left."""
    before = fd_table()
    yield
    leaked = {fd: target for fd, target in fd_table().items() if before.get(fd) != target}
    assert leaked == {}, f"descriptors leaked by the suite: {leaked}"
    assert child_pids() == [], "children (or zombies) left behind by the suite"
    from isolation.cgroups import PIDS_PREFIX, pids_v1_parent

    parent = pids_v1_parent()
    if parent is not None:
        mine = [d for d in os.listdir(parent) if d.startswith(f"{PIDS_PREFIX}{os.getpid()}-")]
        assert mine == [], f"cgroups left behind under {parent}"


@pytest.fixture
def fds_for_200() -> Iterator[None]:
    """200 concurrent sandboxes need about 800 descriptors (2000 while all start at once):
    more than the usual soft limit of 1024, so raise it up to the hard limit as a caller would."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
