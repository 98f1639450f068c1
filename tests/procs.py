"""What the test process can see of processes and descriptors, from /proc, and waiting for it.

Shared by the lifecycle, stress and leak checks (conftest.py): one way to
find a sandbox's processes by a marker in their argv, the test process's
children (zombies included) and its descriptor table, and the one polling
helper (`wait_until`) for what the kernel does in its own time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], bound: float = 10.0, step: float = 0.01) -> bool:
    """Poll `predicate` until it is true (then True) or `bound` seconds have passed (then False)."""
    deadline = time.monotonic() + bound
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def processes_with(marker: str) -> list[int]:
    """Pids of every process whose command line contains `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def child_pids() -> list[int]:
    """Processes whose parent is the test process, zombies included."""
    me, kids = os.getpid(), []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        kids.append(int(pid))
            except OSError:
                continue
    return kids


def fd_table() -> dict[str, str]:
    """The test process's descriptors and what each refers to, after the native
    backend has settled (prepared sandboxes and namespaces released, every init
    reaped: their descriptors and processes come and go)."""
    from isolation.backends import native

    native.settle()
    table = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            table[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor os.listdir itself used
            continue
    return table
