"""Egress by allowlist (docs/network.md), against the real kernel on both backends.

Test hosts are names in /etc/hosts mapped to 127.0.0.x (`.ci/run` adds them; the
`test_hosts` fixture adds them when it runs as root). Real servers listen there.
Each refusal is paired with the server or listener on the other side having seen
nothing, and with a control in which the same probe succeeds where it is allowed.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import PYTHON

import isolation
from isolation import IsolationPolicy
from isolation.egress import PROXY_PORT

pytestmark = pytest.mark.security

PKGS = "pkgs.test-isolation.internal"
OTHER = "other.test-isolation.internal"
TEST_HOSTS = {PKGS: "127.0.0.2", OTHER: "127.0.0.3"}
HOSTS_MARK = "# isolation egress tests"

# What the sandbox tries, as JSON on stdin: a list of [kind, args...]; prints one result per step.
PROBE = r"""
import errno, json, socket, sys, urllib.request, urllib.error
def err(e):
    return errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)
def http_via_proxy(url):
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]
def connect_via(host, port, path):
    with socket.create_connection(("127.0.0.1", PORT), timeout=20) as s:
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = s.recv(65536).decode()
        status = int(head.split()[1])
        if status != 200:
            return [status, head.split("\r\n\r\n", 1)[1]]
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return [status, data.decode().split("\r\n\r\n", 1)[1]]
def socks5(host, port, path):
    with socket.create_connection(("127.0.0.1", PORT), timeout=20) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host.encode() + port.to_bytes(2, "big"))
        reply = s.recv(10)
        if reply[1] != 0:
            return ["socks", reply[1]]
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return ["socks", 0, data.decode().split("\r\n\r\n", 1)[1]]
def direct(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=5):
            return "connected"
    except OSError as e:
        return err(e)
def udp(ip, port):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"udp-probe", (ip, port))
        return "sent"
    except OSError as e:
        return err(e)
out = []
for step in json.load(sys.stdin):
    out.append(globals()[step[0]](*step[1:]))
print(json.dumps(out))
""".replace("PORT", str(PROXY_PORT))


class Recorder(http.server.ThreadingHTTPServer):
    """An HTTP server that records every connection it accepts and every path asked."""

    daemon_threads = True

    def __init__(self, ip: str, root: Path | None = None) -> None:
        self.connections = 0
        self.paths: list[str] = []
        self.root = root
        super().__init__((ip, 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: Recorder

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        root = args[2].root  # the server, before the base class stores it
        super().__init__(*args, directory=str(root or "/nonexistent"), **kwargs)

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.server.root is not None:
            return super().do_GET()
        body = f"hello from {self.server.server_address[0]} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def test_hosts() -> dict[str, str]:
    """The test names resolve to their 127.0.0.x addresses (added to /etc/hosts when root)."""
    missing = {n: ip for n, ip in TEST_HOSTS.items() if _resolves(n) != ip}
    if missing and os.geteuid() == 0:
        with open("/etc/hosts", "a") as f:
            f.write("".join(f"{ip} {n} {HOSTS_MARK}\n" for n, ip in missing.items()))
        missing = {n: ip for n, ip in TEST_HOSTS.items() if _resolves(n) != ip}
    assert not missing, f"add to /etc/hosts (as .ci/run does): {missing}"
    return TEST_HOSTS


def _resolves(name: str) -> str | None:
    try:
        return socket.gethostbyname(name)
    except OSError:
        return None


def _serving(address: str) -> Iterator[Recorder]:
    srv = Recorder(address)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def pkgs(test_hosts: dict[str, str]) -> Iterator[Recorder]:
    yield from _serving(test_hosts[PKGS])


@pytest.fixture
def other(test_hosts: dict[str, str]) -> Iterator[Recorder]:
    yield from _serving(test_hosts[OTHER])


@pytest.fixture
def host_loopback() -> Iterator[Recorder]:
    """A service of the host on 127.0.0.1."""
    yield from _serving("127.0.0.1")


def probe(backend: str, policy: IsolationPolicy, steps: list[list[Any]]) -> tuple[list[Any], isolation.RunResult]:
    res = isolation.run([PYTHON, "-c", PROBE], policy, backend=backend, stdin=json.dumps(steps), timeout=120)
    assert res.returncode == 0, res
    return json.loads(res.stdout), res


def allow(*entries: str, local: bool = False) -> IsolationPolicy:
    return IsolationPolicy(egress_allow=entries, allow_local_addresses=local)


# -- allowed --------------------------------------------------------------------------


def test_an_allowed_name_is_reached_by_plain_http_connect_and_socks5(backend: str, pkgs: Recorder) -> None:
    policy = allow(f"{PKGS}:{pkgs.port}", local=True)
    steps = [
        ["http_via_proxy", f"http://{PKGS}:{pkgs.port}/plain"],
        ["connect_via", PKGS, pkgs.port, "/connect"],
        ["socks5", PKGS, pkgs.port, "/socks"],
    ]
    out, res = probe(backend, policy, steps)
    assert out[0] == [200, "hello from 127.0.0.2 /plain"]
    assert out[1] == [200, "hello from 127.0.0.2 /connect"]
    assert out[2] == ["socks", 0, "hello from 127.0.0.2 /socks"]
    assert pkgs.paths == ["/plain", "/connect", "/socks"]
    assert [(r.protocol, r.host, r.port, r.address, r.allowed) for r in res.network_log] == [
        (p, PKGS, pkgs.port, "127.0.0.2", True) for p in ("http", "connect", "socks5")
    ]
    assert all(r.received > 0 for r in res.network_log)
    assert any(c.startswith("network:allowlist:sha256=") for c in res.enforced)
    assert "namespace:net" in res.enforced


def test_curl_pip_and_git_reach_an_allowed_index(backend: str, test_hosts: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    _simple_index(root / "simple", "egressdemo", "1.0")
    _git_repo(root / "repo.git", tmp_path / "src")
    os.chmod(tmp_path, 0o755)
    srv = Recorder(test_hosts[PKGS], root)
    try:
        base = f"http://{PKGS}:{srv.port}"
        script = (
            f"set -e; cd /tmp; curl -sSf {base}/simple/egressdemo/ | grep -q egressdemo-1.0; echo curl-ok; "
            f"python3 -m pip download --no-cache-dir -q --trusted-host {PKGS} "
            f"--index-url {base}/simple/ egressdemo==1.0 -d /tmp/dl; "
            "ls /tmp/dl; "
            f"git clone -q {base}/repo.git /tmp/clone; cat /tmp/clone/README"
        )
        res = isolation.run(["sh", "-c", script], allow(f"{PKGS}:{srv.port}", local=True), backend=backend,
                            timeout=180)  # fmt: skip
    finally:
        srv.shutdown()
        srv.server_close()
    assert res.returncode == 0, res
    lines = res.stdout.decode().split()
    assert lines == ["curl-ok", "egressdemo-1.0-py3-none-any.whl", "cloned-through-the-proxy"], res
    assert res.network_log and all(r.allowed and r.host == PKGS for r in res.network_log)


def _simple_index(simple: Path, name: str, version: str) -> None:
    """A PEP 503 index holding one pure wheel."""
    wheel = f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{name}.py", "X = 1\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    (simple / name).mkdir(parents=True)
    (simple / name / wheel).write_bytes(buf.getvalue())
    (simple / "index.html").write_text(f'<a href="{name}/">{name}</a>')
    (simple / name / "index.html").write_text(f'<a href="{wheel}">{wheel}</a>')


def _git_repo(bare: Path, work: Path) -> None:
    """A bare repository served by dumb HTTP (git update-server-info)."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(work.parent)}  # fmt: skip
    work.mkdir()
    (work / "README").write_text("cloned-through-the-proxy\n")
    for cmd in (["init", "-q"], ["add", "README"], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(work), *cmd], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, env=env)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True, env=env)
    for d, _, files in os.walk(bare.parent):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)


# -- refused ----------------------------------------------------------------------------


def test_an_unlisted_name_is_refused_and_its_server_sees_nothing(
    backend: str, pkgs: Recorder, other: Recorder
) -> None:
    policy = allow(f"{PKGS}:{pkgs.port}", local=True)
    steps = [
        ["http_via_proxy", f"http://{OTHER}:{other.port}/x"],
        ["connect_via", OTHER, other.port, "/x"],
        ["socks5", OTHER, other.port, "/x"],
        ["http_via_proxy", f"http://{PKGS}:{pkgs.port}/control"],  # the same run reaches the allowed name
    ]
    out, res = probe(backend, policy, steps)
    assert out[0][0] == 403 and f"no entry allows {OTHER} on port {other.port}" in out[0][1]
    assert "network:allowlist:sha256=" in out[0][1] and f"{PKGS}:{pkgs.port}" in out[0][1]  # names the policy
    assert out[1][0] == 403 and out[2] == ["socks", 2]  # SOCKS5: connection not allowed by ruleset
    assert out[3] == [200, "hello from 127.0.0.2 /control"]
    assert other.connections == 0 and other.paths == []
    refused = [r for r in res.network_log if not r.allowed]
    assert [(r.protocol, r.host, r.address) for r in refused] == [
        ("http", OTHER, None), ("connect", OTHER, None), ("socks5", OTHER, None)
    ]


def test_the_bare_ip_of_an_allowed_name_is_refused(backend: str, pkgs: Recorder) -> None:
    policy = allow(f"{PKGS}:{pkgs.port}", local=True)
    out, res = probe(backend, policy, [
        ["http_via_proxy", f"http://127.0.0.2:{pkgs.port}/ip"],
        ["connect_via", "127.0.0.2", pkgs.port, "/ip"],
        ["socks5", "127.0.0.2", pkgs.port, "/ip"],
    ])  # fmt: skip
    assert out[0][0] == 403 and "name entries never match an IP" in out[0][1]
    assert out[1][0] == 403 and out[2] == ["socks", 2]
    assert pkgs.connections == 0
    # Control: an entry naming the IP allows it.
    out, _ = probe(backend, allow(f"127.0.0.2:{pkgs.port}"), [["http_via_proxy", f"http://127.0.0.2:{pkgs.port}/ip"]])
    assert out[0] == [200, "hello from 127.0.0.2 /ip"] and pkgs.connections == 1


def test_a_name_resolving_to_a_local_address_needs_allow_local_addresses(backend: str, pkgs: Recorder) -> None:
    out, res = probe(backend, allow(f"{PKGS}:{pkgs.port}"), [
        ["http_via_proxy", f"http://{PKGS}:{pkgs.port}/local"],
        ["connect_via", PKGS, pkgs.port, "/local"],
    ])  # fmt: skip
    assert out[0][0] == 403 and "127.0.0.2 is a local address" in out[0][1]
    assert out[1][0] == 403
    assert pkgs.connections == 0
    assert [(r.address, r.allowed) for r in res.network_log] == [("127.0.0.2", False)] * 2
    # Control: the same with allow_local_addresses (test_an_allowed_name_... covers the protocols).
    out, _ = probe(backend, allow(f"{PKGS}:{pkgs.port}", local=True), [["http_via_proxy", f"http://{PKGS}:{pkgs.port}/"]])
    assert out[0][0] == 200 and pkgs.connections == 1


def test_direct_connections_bypassing_the_proxy_fail(backend: str, pkgs: Recorder, host_loopback: Recorder) -> None:
    policy = allow(f"{PKGS}:{pkgs.port}", f"127.0.0.1:{host_loopback.port}", local=True)
    out, _ = probe(backend, policy, [
        ["direct", "127.0.0.2", pkgs.port],  # an allowed destination, hard-coded, without the proxy
        ["direct", "127.0.0.1", host_loopback.port],  # the host's loopback service
        ["direct", "192.0.2.1", 80],  # anything off the box: no route
        ["direct", "169.254.169.254", 80],  # the metadata address
        ["http_via_proxy", f"http://{PKGS}:{pkgs.port}/control"],
    ])  # fmt: skip
    # Inside, 127.0.0.x is the sandbox's own loopback: nothing listens there. Landlock (native,
    # ABI >= 4) refuses the connect before that.
    assert out[0] in ("ECONNREFUSED", "EACCES") and out[1] in ("ECONNREFUSED", "EACCES")
    assert out[2] in ("ENETUNREACH", "EACCES") and out[3] in ("ENETUNREACH", "EACCES")
    assert out[4][0] == 200
    assert pkgs.paths == ["/control"] and host_loopback.connections == 0


def test_host_loopback_and_metadata_are_refused_through_the_proxy(
    backend: str, pkgs: Recorder, host_loopback: Recorder
) -> None:
    policy = allow(f"{PKGS}:{pkgs.port}", f"localhost:{host_loopback.port}")
    out, res = probe(backend, policy, [
        ["http_via_proxy", f"http://127.0.0.1:{host_loopback.port}/"],  # not named
        ["http_via_proxy", f"http://localhost:{host_loopback.port}/"],  # named, but loopback
        ["http_via_proxy", "http://169.254.169.254/latest/meta-data/"],
        ["socks5", "169.254.169.254", 80, "/"],
    ])  # fmt: skip
    assert [o[0] for o in out[:3]] == [403, 403, 403] and out[3] == ["socks", 2]
    assert "is a local address" in out[1][1]
    assert host_loopback.connections == 0
    assert [r.allowed for r in res.network_log] == [False] * 4
    # Control: the host service is reachable where an entry names its address explicitly.
    out, _ = probe(backend, allow(f"127.0.0.1:{host_loopback.port}"),
                   [["http_via_proxy", f"http://127.0.0.1:{host_loopback.port}/"]])  # fmt: skip
    assert out[0][0] == 200 and host_loopback.connections == 1


def test_udp_to_the_host_goes_nowhere(backend: str, pkgs: Recorder) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.2", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        out, _ = probe(backend, allow(f"{PKGS}:{pkgs.port}", local=True),
                       [["udp", "127.0.0.2", port], ["udp", "192.0.2.1", 53], ["udp", "10.0.0.1", 53]])  # fmt: skip
        # To its own loopback the datagram is "sent" (and lost); off the box there is no route.
        assert out[0] == "sent" and out[1] == "ENETUNREACH" and out[2] == "ENETUNREACH"
        with pytest.raises(BlockingIOError):
            listener.recv(100)
        # Control: the same datagram from the host arrives.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"udp-probe", ("127.0.0.2", port))
        listener.setblocking(True)
        listener.settimeout(10)
        assert listener.recv(100) == b"udp-probe"


# -- robustness, logs, resources ------------------------------------------------------------

FLOOD = r"""
import socket, sys, time
held = []
for i in range(300):  # far past the per-sandbox connection limit
    try:
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    except OSError:
        continue
    try:
        s.sendall(b"GET http://" if i % 2 else b"\x00garbage\r\n" * 100)  # slow heads and garbage
    except OSError:
        pass
    held.append(s)
print("flooding", flush=True)
sys.stdin.read()
""".replace("PORT", str(PROXY_PORT))


def test_a_flooding_sandbox_does_not_starve_another(backend: str, pkgs: Recorder) -> None:
    policy = allow(f"{PKGS}:{pkgs.port}", local=True)
    with isolation.spawn([PYTHON, "-c", FLOOD], policy, backend=backend, stdin=isolation.PIPE) as flood:
        assert flood.stdout is not None and flood.stdout.readline() == b"flooding\n"
        out, res = probe(backend, policy, [["http_via_proxy", f"http://{PKGS}:{pkgs.port}/{i}"] for i in range(5)])
        assert [o[0] for o in out] == [200] * 5
        assert flood.poll() is None  # the flood was still going on
        flood.kill()


def test_cli_json_and_audit_log_list_what_was_asked_and_refused(
    backend: str, pkgs: Recorder, other: Recorder, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    steps = json.dumps([["http_via_proxy", f"http://{PKGS}:{pkgs.port}/a"], ["http_via_proxy", f"http://{OTHER}/b"]])
    r = subprocess.run(
        [sys.executable, "-m", "isolation", "run", "--json", "--backend", backend, "--audit-log", str(log),
         "--allow-host", f"{PKGS}:{pkgs.port}", "--allow-local-addresses", "--", PYTHON, "-c", PROBE],
        input=steps, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    asked = [(e["host"], e["allowed"]) for e in record["network_log"]]
    assert asked == [(PKGS, True), (OTHER, False)]
    assert record["network_log"][1]["rule"] == f"no entry allows {OTHER} on port 80"
    audit = json.loads(log.read_text().splitlines()[-1])
    assert [(e["host"], e["allowed"]) for e in audit["network_log"]] == asked
    assert audit["plan"]["egress"]["allow"] == [f"{PKGS}:{pkgs.port}"]
    assert audit["plan"]["egress"]["claim"] in audit["enforced"]
    assert other.connections == 0


def test_everything_is_freed_when_the_run_ends(backend: str, pkgs: Recorder) -> None:
    before = {t.name for t in threading.enumerate()}
    dirs_before = {d for d in os.listdir("/tmp") if d.startswith("isolation-egress-")}
    fds_before = set(os.listdir("/proc/self/fd"))
    out, _ = probe(backend, allow(f"{PKGS}:{pkgs.port}", local=True), [["http_via_proxy", f"http://{PKGS}:{pkgs.port}/"]])
    assert out[0][0] == 200
    assert not {t.name for t in threading.enumerate() if t.name.startswith("isolation-egress")} - before
    assert {d for d in os.listdir("/tmp") if d.startswith("isolation-egress-")} == dirs_before
    assert set(os.listdir("/proc/self/fd")) <= fds_before | {str(max(map(int, fds_before)) + 1)}


def test_without_an_allowlist_nothing_of_the_proxy_is_there(backend: str) -> None:
    res = isolation.run([PYTHON, "-c", "import os, json; print(json.dumps(sorted(os.environ)))"], backend=backend)
    assert "HTTP_PROXY" not in json.loads(res.stdout) and res.network_log == ()
    assert not any(c.startswith("network:allowlist") for c in res.enforced)
    assert shutil.which("curl")  # the allowed-path test uses it (.ci/run installs it)


def test_the_install_example_reaches_only_its_index(backend: str, test_hosts: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    _simple_index(root / "simple", "egressdemo", "1.0")
    os.chmod(tmp_path, 0o755)
    srv = Recorder(test_hosts[PKGS], root)
    target = tmp_path / "target"
    try:
        example = Path(__file__).resolve().parent.parent / "examples" / "install_deps.py"
        env = {**os.environ, "NOETHER_ISOLATION": backend}
        r = subprocess.run(
            [sys.executable, str(example), "install", "egressdemo==1.0", str(target),
             "--index-url", f"http://{PKGS}:{srv.port}/simple/", "--allow-local-addresses"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
    finally:
        srv.shutdown()
        srv.server_close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Successfully installed egressdemo-1.0" in r.stdout and (target / "egressdemo.py").exists()
    network = [line for line in r.stdout.splitlines() if line.startswith("network: ")]
    assert network and all(line.startswith(f"network: {PKGS}:{srv.port} -> 127.0.0.2: allowed") for line in network)


def test_allowlist_runs_start_reliably_among_concurrent_runs(backend: str, pkgs: Recorder) -> None:
    """Runs with and without an allowlist started at once from several threads all start
    (the helper is bound, never copied: a copy's descriptor open for writing, held by a
    concurrent fork, made its execve fail with ETXTBSY)."""
    from concurrent.futures import ThreadPoolExecutor

    policy = allow(f"{PKGS}:{pkgs.port}", local=True)

    def one(i: int) -> int:
        return isolation.run(["/bin/true"], policy if i % 2 else IsolationPolicy(), backend=backend).returncode

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(160))) == [0] * 160


def test_a_failed_hand_over_is_a_setup_error_and_the_command_never_runs(backend: str, tmp_path: Path) -> None:
    """The helper cannot reach the caller (its socket path broken here): SandboxSetupError
    naming the step, and the command is never executed."""
    from isolation import egress

    marker = tmp_path / "ran"
    os.chmod(tmp_path, 0o777)
    policy = allow("pkgs.test-isolation.internal").with_write(str(tmp_path))
    real = egress.EgressSession.wrap_argv

    def broken(self: egress.EgressSession, argv: tuple[str, ...]) -> tuple[str, ...]:
        inner = real(self, argv)
        return (inner[0], inner[1] + ".missing", *inner[2:])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(egress.EgressSession, "wrap_argv", broken)
        with pytest.raises(isolation.SandboxSetupError, match="egress setup failed.*at connect"):
            isolation.run(["sh", "-c", f"touch {marker}"], policy, backend=backend, timeout=60)
    assert not marker.exists()
    # Control: unbroken, the same command runs.
    assert isolation.run(["sh", "-c", f"touch {marker}"], policy, backend=backend, timeout=60).returncode == 0
    assert marker.exists()
