"""pid 1 of a native sandbox is isolation-init from the command's first instruction.

Issue 11 A.1: the future init used to start the command while it still ran in
the caller's address space, so a command whose first syscalls read
/proc/1/cmdline saw the caller's argv (a `--db-password=...` in it), and
without Landlock it could open /proc/1/mem and write the caller's memory.

The attack: a tiny static C probe whose very first actions read pid 1's
cmdline and environ and open its mem for writing, run a few hundred times by
a caller (a separate Python process) whose own argv and environment carry a
secret marker, on demand and from a prepared sandbox, with and without
Landlock. Controls: the probe does read pid 1's cmdline (it is
"isolation-init"), it can open its own /proc/self/mem for writing, and the
marker is there on the host, in the caller's /proc/PID/cmdline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.security

ROUNDS = 300

PROBE_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static void hex(const char *name, const char *path)
{
    unsigned char buf[4096];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
    int err = errno;
    if (fd >= 0)
        close(fd);
    printf("%s=", name);
    if (n < 0)
        printf("E%d", err);
    else
        for (ssize_t i = 0; i < n; i++)
            printf("%02x", buf[i]);
    printf("\n");
}

static void can_write(const char *name, const char *path)
{
    int fd = open(path, O_RDWR);
    printf("%s=%s\n", name, fd >= 0 ? "opened" : "denied");
}

int main(void)
{
    /* First thing: while nothing but the caller's clone could still be pid 1. */
    can_write("mem", "/proc/1/mem");
    hex("cmdline", "/proc/1/cmdline");
    hex("environ", "/proc/1/environ");
    can_write("self_mem", "/proc/self/mem"); /* control: a mem file it may write */
    return 0;
}
"""

# The calling service: its argv and environment carry the secret. It runs the probe
# ROUNDS times, prints a summary, then waits for its stdin to close (so the test can
# look at its command line on the host meanwhile).
CALLER = textwrap.dedent(
    """
    import collections, json, os, sys, time
    import attrs
    import isolation
    from isolation import IsolationPolicy
    from isolation.backends import native
    from isolation.backends.native import prepared
    from isolation.policy import Bind

    path, rounds, probe_dir, landlock = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    enforcement = "strict"
    if landlock == "no-landlock":  # a host without Landlock, injected in this process only
        real_features = native.host_features
        native.host_features = lambda: attrs.evolve(real_features(), landlock_abi=0)
        enforcement = "best_effort"
    policy = IsolationPolicy(ro_binds=(Bind(host=probe_dir, sandbox="/probe"),))
    took = []
    real_take = prepared.POOL.take

    def take(shape):
        got = real_take(shape)
        took.append(got is not None)
        return got

    prepared.POOL.take = take
    isolation.run(["/probe/probe"], policy, backend="native", enforcement=enforcement)  # the pool learns the policy
    took.clear()
    seen = collections.Counter()
    for _ in range(rounds):
        if path == "prepared":  # back to back, runs build their own: wait for the pool
            prepared.wait_ready(10)
        res = isolation.run(["/probe/probe"], policy, backend="native", enforcement=enforcement, timeout=60)
        seen[json.dumps([res.returncode, res.stdout.decode(), res.stderr.decode()[-500:], res.missing])] += 1
    summary = {"seen": [[json.loads(k), n] for k, n in seen.items()], "took": took}
    print(json.dumps(summary), flush=True)
    sys.stdin.read()
    native.settle()
    """
)


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pid1-probe")
    (d / "probe.c").write_text(PROBE_C)
    subprocess.run(["gcc", "-O2", "-static", "-o", str(d / "probe"), str(d / "probe.c")], check=True)
    (d / "caller.py").write_text(CALLER)
    for p in (d, d / "probe", d / "caller.py"):  # readable by the sandbox's uid 65534 too
        p.chmod(0o755)
    return d


def _decode(field: str) -> bytes | str:
    return field if field.startswith("E") else bytes.fromhex(field)


@pytest.mark.parametrize("landlock", ["landlock", "no-landlock"])
# built on demand, and a sandbox prepared ahead of demand
@pytest.mark.parametrize("path", ["on-demand", "prepared"])
def test_pid1_is_isolation_init_from_the_commands_first_instruction(
    probe_dir: Path, path: str, landlock: str
) -> None:
    marker = f"--db-password=s3cret-{uuid.uuid4().hex}"
    env = {**os.environ, "DB_TOKEN": marker, "PYTHONPATH": os.pathsep.join(sys.path)}
    env["ISOLATION_PREPARED_SANDBOXES"] = "1" if path == "prepared" else "0"
    caller = subprocess.Popen(
        [sys.executable, str(probe_dir / "caller.py"), path, str(ROUNDS), str(probe_dir), landlock, marker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        line = caller.stdout.readline() if caller.stdout else b""
        # Control: on the host, the caller's own command line shows the secret.
        host_view = Path(f"/proc/{caller.pid}/cmdline").read_bytes()
    finally:
        if caller.stdin:
            caller.stdin.close()
        caller.wait(timeout=60)
    assert caller.returncode == 0 and line, line
    assert marker.encode() in host_view
    summary = json.loads(line)
    if path == "prepared":  # control: every run took a prepared sandbox
        assert summary["took"] == [True] * ROUNDS
    else:
        assert not any(summary["took"])
    runs = 0
    for (returncode, stdout, stderr, missing), count in summary["seen"]:
        runs += count
        assert returncode == 0, stderr
        assert ("landlock:fs" in missing) == (landlock == "no-landlock")  # control: the rung that ran
        fields = dict(line.split("=", 1) for line in stdout.splitlines())
        assert _decode(fields["cmdline"]) == b"isolation-init\0"  # read, and it names init only
        assert marker not in stdout and marker.encode().hex() not in stdout
        assert fields["environ"].startswith("E")  # init is not dumpable: no environ to read
        assert fields["mem"] == "denied"
        assert fields["self_mem"] == "opened"  # control: the probe may write a mem file it owns
    assert runs == ROUNDS
