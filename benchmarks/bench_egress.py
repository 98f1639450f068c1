"""The egress proxy's cost, side by side in one run (docs/network.md).

1. Throughput: 100 MB (BENCH_EGRESS_MB) from a loopback server, read directly and
   through the proxy's CONNECT tunnel (the same `EgressProxy` a sandbox gets, serving a
   listener of the caller's here, so both clients are the same code on the host);
   target: proxy >= 70 % of direct. Then the same download by a sandboxed client
   through its real proxy, for each backend (no direct counterpart exists inside).
2. Connection set-up: connect + one tiny request/response, direct and through the
   proxy (CONNECT to an allowed name: the check, the name resolution, the upstream
   connect); target: added time < 1 ms (medians).
3. Runs without an allowlist: `/bin/true` with the strict policy, and what the
   allowlist code adds to such a run (the checks on its path), interleaved with
   allowlist runs for scale. With BENCH_BASELINE=DIR (a checkout without the
   allowlist, extension built in place) the same plain runs are timed in
   processes of this checkout and of DIR, alternating, side by side.

Rounds are interleaved so machine noise hits all alike; BENCH_ROUNDS (default 3).
"""

from __future__ import annotations

import atexit
import os
import socket
import statistics
import subprocess
import sys
import time
import timeit

from bench_throughput import backends  # this directory: the backends this host can run

import isolation
from isolation import IsolationPolicy
from isolation.egress import PROXY_PORT, EgressProxy
from isolation.egress_rules import parse_rules

MB = int(os.environ.get("BENCH_EGRESS_MB", "100"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTS = 300
TOTAL = MB << 20


# The server and the clients run as processes of their own, as they do for real (the
# client in the sandbox, the server elsewhere): only the proxy runs in this process.
SERVER = r"""
import socket, sys, threading
total, chunk = int(sys.argv[1]), 1 << 20
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(128)
print(srv.getsockname()[1], flush=True)
payload = b"x" * chunk
def client(c):
    with c:
        if c.recv(16).startswith(b"PING"):
            c.sendall(b"PONG")
            return
        left = total
        while left:
            left -= c.send(payload[: min(chunk, left)])
while True:
    c, _ = srv.accept()
    threading.Thread(target=client, args=(c,), daemon=True).start()
"""

CLIENT = r"""
import socket, statistics, sys, time
port, via, total, connects = (int(a) for a in sys.argv[1:5])
host = sys.argv[5] if len(sys.argv) > 5 else "localhost"
def open_conn():
    if not via:
        return socket.create_connection(("127.0.0.1", port))
    s = socket.create_connection(("127.0.0.1", via))
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(4096)  # the proxy sends nothing before the tunnel's first byte
    assert head.startswith(b"HTTP/1.1 200"), head
    return s
if connects:
    times = []
    for _ in range(connects):
        start = time.perf_counter()
        with open_conn() as s:
            s.sendall(b"PING")
            assert s.recv(4) == b"PONG"
        times.append(time.perf_counter() - start)
    print(statistics.median(times))
else:
    def busy():  # CPU seconds the whole machine spent not idle, from /proc/stat
        with open("/proc/stat") as f:
            t = [int(v) for v in f.readline().split()[1:9]]
        return (sum(t) - t[3] - t[4]) / 100
    buf = bytearray(1 << 20)
    cpu, start = busy(), time.perf_counter()
    with open_conn() as s:
        s.sendall(b"GET")
        got = 0
        while n := s.recv_into(buf):
            got += n
    assert got == total, got
    print((total >> 20) / (time.perf_counter() - start), (busy() - cpu) / (total / 1e9))
"""


def start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(TOTAL)], stdout=subprocess.PIPE, text=True)
    atexit.register(proc.kill)  # also when a round fails: no server left holding the output
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def proxy_for(port: int) -> tuple[EgressProxy, int]:
    proxy = EgressProxy(parse_rules([f"localhost:{port}"]), True)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(128)
    proxy.serve(lst)
    return proxy, lst.getsockname()[1]


def client(port: int, via: int, connects: int = 0) -> float:
    """The download's MB/s, or the median set-up time (s) with `connects`."""
    return _client(port, via, connects)[0]


def _client(port: int, via: int, connects: int = 0) -> list[float]:
    out = subprocess.run([sys.executable, "-c", CLIENT, str(port), str(via), str(TOTAL), str(connects)],
                         capture_output=True, text=True, check=True, timeout=600)  # fmt: skip
    return [float(v) for v in out.stdout.split()]


SANDBOX_CLIENT = CLIENT


def main() -> int:
    server, port = start_server()
    proxy, via = proxy_for(port)
    direct, proxied, c_direct, c_proxied = [], [], [], []
    cpu: dict[str, list[float]] = {"direct": [], "proxied": []}
    for _ in range(ROUNDS):
        for rates, name, through in ((direct, "direct", 0), (proxied, "proxied", via)):
            rate, cpu_per_gb = _client(port, through)
            rates.append(rate)
            cpu[name].append(cpu_per_gb)
        c_direct.append(client(port, 0, CONNECTS // ROUNDS))
        c_proxied.append(client(port, via, CONNECTS // ROUNDS))
    d, p = statistics.median(direct), statistics.median(proxied)
    print(f"throughput, {MB} MB over loopback: direct {d:.0f} MB/s, through the proxy {p:.0f} MB/s "
          f"= {100 * p / d:.0f} % (target >= 70 %)")  # fmt: skip
    # What bounds the ratio on a small machine: the CPU the whole machine spends per GB
    # moved (server, proxy, client and the kernel's softirq work), read from /proc/stat.
    cd_gb, cp_gb = statistics.median(cpu["direct"]), statistics.median(cpu["proxied"])
    print(f"machine CPU per GB moved: direct {cd_gb:.2f} s, through the proxy {cp_gb:.2f} s "
          f"= {cp_gb / cd_gb:.2f}x, on {os.cpu_count()} CPUs")  # fmt: skip
    cd, cp = statistics.median(c_direct) * 1e3, statistics.median(c_proxied) * 1e3
    print(f"connection set-up + tiny exchange (median of {CONNECTS}): direct {cd:.3f} ms, through the proxy "
          f"{cp:.3f} ms, added {cp - cd:.3f} ms (target < 1 ms)")  # fmt: skip
    proxy.stop()

    policy = IsolationPolicy(egress_allow=[f"localhost:{port}"], allow_local_addresses=True)
    for name in backends():
        rates = []
        for _ in range(ROUNDS):
            argv = ["/usr/bin/python3", "-c", SANDBOX_CLIENT, str(port), str(PROXY_PORT), str(TOTAL), "0"]
            res = isolation.run(argv, policy, backend=name, timeout=300)
            assert res.returncode == 0, res.stderr
            rates.append(float(res.stdout.split()[0]))
        print(f"  {name}: a sandboxed client through its proxy: {statistics.median(rates):.0f} MB/s")
    server.kill()
    server.wait()

    # Runs without an allowlist: what the allowlist code adds on their path, and the run itself.
    plain = IsolationPolicy()
    checks = timeit.timeit(lambda: bool(plain.egress_allow) or bool(plain.egress_allow), number=100000) / 100000
    for name in backends():
        t_plain, t_egress = [], []
        for _ in range(ROUNDS * 10):
            start = time.perf_counter()
            isolation.run(["/bin/true"], plain, backend=name)
            t_plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            isolation.run(["/bin/true"], policy, backend=name)
            t_egress.append(time.perf_counter() - start)
        mp, me = statistics.median(t_plain) * 1e3, statistics.median(t_egress) * 1e3
        print(f"  {name}: /bin/true without an allowlist {mp:.2f} ms (the allowlist checks on its path: "
              f"{checks * 1e9:.0f} ns); with one {me:.2f} ms")  # fmt: skip
    baseline = os.environ.get("BENCH_BASELINE")
    if baseline:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for name in backends():
            rows: dict[str, list[float]] = {"this checkout": [], baseline: []}
            for _ in range(ROUNDS):
                for label, path in (("this checkout", here), (baseline, baseline)):
                    out = subprocess.run([sys.executable, "-c", PLAIN, name, "300"], capture_output=True, text=True,
                                         check=True, env={**os.environ, "PYTHONPATH": path})  # fmt: skip
                    rows[label].append(float(out.stdout))
            text = ", ".join(f"{k}: {' '.join(f'{v:.2f}' for v in vs)} ms" for k, vs in rows.items())
            print(f"  {name}: /bin/true without an allowlist, medians per round: {text}")
    return 0 if p >= 0.7 * d and cp - cd < 1.0 else 1


PLAIN = r"""
import statistics, sys, time
import isolation
backend, n = sys.argv[1], int(sys.argv[2])
for _ in range(20):
    isolation.run(["/bin/true"], backend=backend)
times = []
for _ in range(n):
    start = time.perf_counter()
    isolation.run(["/bin/true"], backend=backend)
    times.append(time.perf_counter() - start)
print(statistics.median(times) * 1e3)
"""


if __name__ == "__main__":
    sys.exit(main())
