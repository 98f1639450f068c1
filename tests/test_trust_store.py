"""Issue 15 item 6: the TLS trust store is readable in every sandbox, not only with Network.

Public CA certificates are public data; without them a tool that has no network
reports a missing CA bundle instead of the real problem. The private-key
directories beside them stay invisible.
"""

from __future__ import annotations

import json
import os
import ssl

import pytest

from isolation import IsolationPolicy, run
from isolation.sysview import TRUST_STORE

pytestmark = pytest.mark.security

PROBE = r"""
import json, os, ssl
p = ssl.get_default_verify_paths()
out = {"cafile": p.cafile, "capath": p.capath, "private": os.path.exists("/etc/ssl/private")}
try:
    with open(p.cafile, "rb") as f:
        out["cafile_head"] = f.read(64).decode("ascii", "replace")
except OSError as e:
    out["cafile_head"] = "error: " + e.strerror
try:
    out["loaded"] = ssl.create_default_context().cert_store_stats()["x509_ca"]
except Exception as e:
    out["loaded"] = repr(e)
try:
    import socket
    socket.create_connection(("192.0.2.1", 443), timeout=1)
    out["connect"] = "ok"
except OSError as e:
    out["connect"] = type(e).__name__
print(json.dumps(out))
"""


def _host_cafile() -> str:
    """OpenSSL's default CA file, as a sandbox sees it (its cleared environment has no SSL_CERT_FILE)."""
    cafile = ssl.get_default_verify_paths().openssl_cafile
    if not os.path.isfile(cafile):
        pytest.fail("this host has no CA bundle at OpenSSL's default path; install ca-certificates")
    return cafile


def test_the_trust_store_is_readable_without_network(backend: str) -> None:
    cafile = _host_cafile()
    with open(cafile, "rb") as f:
        head = f.read(64).decode("ascii", "replace")
    res = run(["/usr/bin/python3", "-c", PROBE], IsolationPolicy(), backend=backend)
    assert res.returncode == 0, res.stderr
    inside = json.loads(res.stdout)
    assert inside["cafile"] == cafile and inside["cafile_head"] == head
    assert isinstance(inside["loaded"], int) and inside["loaded"] > 0, inside
    # Still no network: the certificates do not bring it, and the private keys stay hidden.
    assert inside["connect"] != "ok"
    assert inside["private"] is False


def test_control_the_trust_store_probe_sees_the_same_with_network(backend: str) -> None:
    res = run(["/usr/bin/python3", "-c", PROBE], IsolationPolicy(network=True), backend=backend)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["cafile"] == _host_cafile()


def test_plan_binds_only_public_trust_files() -> None:
    from isolation.plan import build_plan

    targets = {m.target for m in build_plan(IsolationPolicy(), ["true"]).mounts}
    assert "/etc/ssl/certs" in targets
    assert all("private" not in p for p in TRUST_STORE)
    assert not any(t.startswith("/etc/ssl/private") or t.startswith("/etc/pki/tls/private") for t in targets)
    assert "/etc/resolv.conf" not in targets
