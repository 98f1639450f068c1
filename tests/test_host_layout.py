"""The native backend on a host without user namespaces (the best-effort host layout),
and how tests simulate such hosts.

Every hole the host layout could leave is tried inside a real run and must fail or be
named in `RunResult.missing`; each probe has a control where the same probe succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

import isolation

pytestmark = pytest.mark.security
PYTHON = "/usr/bin/python3"

# -- test switches are not reachable from production (issue 11, B.15) -----------------

LAYERS = """
import errno, json, os, stat
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
def whiteout():  # Landlock's make_char governs even a 0:0 node, which needs no capability
    p = "/tmp/whiteout-%d" % os.getpid()
    try:
        os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    except OSError as e:
        return errno.errorcode[e.errno]
    os.unlink(p)
    return "ok"
open("/tmp/written", "w").write("x")  # an unlisted /tmp rule would refuse this
print(json.dumps({"seccomp": status["Seccomp"].strip(), "whiteout": whiteout(), "usr": len(os.listdir("/usr")) > 0}))
"""
OLD_SWITCHES = {
    "_ISOLATION_TEST_PRETEND_MISSING": "userns,landlock,seccomp,landlock-abi=0",
    "_ISOLATION_TEST_LANDLOCK_UNLISTED": "/tmp,/usr,/work,/proc,/dev",
}


@pytest.mark.parametrize("enforcement", ["strict", "best_effort"])
def test_the_old_test_variables_switch_nothing_off(
    monkeypatch: pytest.MonkeyPatch, host_lacking: Callable[[str], None], enforcement: str
) -> None:
    for name, value in OLD_SWITCHES.items():
        monkeypatch.setenv(name, value)
    res = isolation.run([PYTHON, "-c", LAYERS], timeout=60, enforcement=enforcement)
    assert res.returncode == 0 and res.backend == "native", res  # auto still finds every layer
    facts = json.loads(res.stdout)
    assert facts == {"seccomp": "2", "whiteout": "EACCES", "usr": True}, facts
    assert any(e.startswith("landlock:abi=") for e in res.enforced)
    assert any(e.startswith("seccomp:") for e in res.enforced)
    assert "namespace:user" in res.enforced and not any(m.startswith(("landlock", "seccomp")) for m in res.missing)
    # Controls: the probes see each layer go when a test takes it away in-process.
    host_lacking("seccomp")
    res = isolation.run([PYTHON, "-c", LAYERS], backend="native", timeout=60, enforcement="best_effort")
    assert json.loads(res.stdout)["seccomp"] == "0" and "seccomp" in res.missing
    host_lacking("landlock")
    res = isolation.run([PYTHON, "-c", LAYERS], backend="native", timeout=60, enforcement="best_effort")
    assert json.loads(res.stdout)["whiteout"] == "ok" and "landlock:fs" in res.missing
