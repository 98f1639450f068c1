"""The egress proxy: a sandbox's only way out, on the caller's side (docs/network.md).

The sandbox keeps its own network namespace with loopback only. Inside it, before the
command runs, a listening socket on 127.0.0.1:PROXY_PORT is made and handed to the
caller (see `EgressSession`); connections to it are served here, in the caller: HTTP
CONNECT, plain-HTTP forwarding of absolute-URI requests, and SOCKS5 with remote name
resolution. Names are resolved here, on the host; the name and port are checked, then
each resolved address (local space needs an explicit entry or allow_local_addresses),
and only then is a connection made, to the very address that was checked.

Each sandbox gets its own proxy: its own accept thread, at most `max_connections`
connections (two relay threads each), header and idle deadlines, so one sandbox
flooding or stalling its proxy only slows itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import queue
import select
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable

import attrs

from isolation.egress_rules import PROXY_PORT, EgressRule, IPAddress, Verdict, check_address, check_request
from isolation.errors import SandboxSetupError
from isolation.plan import Mount, SandboxPlan
from isolation.result import NetworkRecord

PROXY_ADDR = f"127.0.0.1:{PROXY_PORT}"
MOUNT_DIR = "/.isolation-egress"  # inside the sandbox: the helper and the hand-over socket
HELPER_NAME = "_isolation_egress"
_BUF = 1 << 20
_SOCKBUF = 4 << 20


def proxy_env() -> tuple[tuple[str, str], ...]:
    """The variables that send HTTP clients (curl, pip, git, urllib, requests) to the proxy."""
    http = f"http://{PROXY_ADDR}"
    socks = f"socks5h://{PROXY_ADDR}"
    pairs = [("HTTP_PROXY", http), ("HTTPS_PROXY", http), ("ALL_PROXY", socks), ("NO_PROXY", "")]
    return tuple((*pairs, *((k.lower(), v) for k, v in pairs)))


def allowlist_digest(rules: tuple[EgressRule, ...], allow_local: bool) -> str:
    """sha256 of the canonical allowlist: the `enforced` claim and the audit name it."""
    doc = {"allow": [str(r) for r in rules], "allow_local_addresses": allow_local}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@attrs.frozen
class ProxyLimits:
    """Per-sandbox bounds: what one sandbox can make its own proxy hold."""

    max_connections: int = 32
    max_header: int = 16384  # bytes of a request's head (or SOCKS handshake)
    header_timeout: float = 10.0  # seconds to send a whole request head (slowloris)
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0  # seconds without a byte either way


class _Refused(Exception):
    def __init__(self, verdict_rule: str, address: str | None = None) -> None:
        super().__init__(verdict_rule)
        self.rule = verdict_rule
        self.address = address


class _BadRequest(Exception):
    pass


class EgressProxy:
    """Serves one sandbox's listening socket until `stop()`; `log` is what it was asked."""

    def __init__(
        self,
        rules: tuple[EgressRule, ...],
        allow_local: bool,
        *,
        limits: ProxyLimits | None = None,
        resolve: Callable[[str, int], list[IPAddress]] | None = None,
    ) -> None:
        self.rules = rules
        self.allow_local = allow_local
        self.limits = limits or ProxyLimits()
        self.digest = allowlist_digest(rules, allow_local)
        self._resolve = resolve or _resolve
        self._lock = threading.Lock()
        self._log: list[NetworkRecord] = []
        self._socks: set[socket.socket] = set()
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        # Workers wait here for their next connection once done (a thread's start costs ~0.1 ms).
        self._queue: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self._idle = 0

    @property
    def log(self) -> tuple[NetworkRecord, ...]:
        with self._lock:
            return tuple(self._log)

    def policy_text(self) -> str:
        local = "; local addresses allowed" if self.allow_local else ""
        return f"network:allowlist:sha256={self.digest} ({', '.join(map(str, self.rules))}{local})"

    # -- lifecycle -----------------------------------------------------------

    def serve(self, listener: socket.socket) -> None:
        """Accept on `listener` (a listening TCP socket, possibly made in another namespace) in a thread."""
        listener.setblocking(False)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="isolation-egress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every connection; wait for the threads."""
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            socks, workers = list(self._socks), list(self._workers)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for _ in workers:
            self._queue.put(None)
        deadline = time.monotonic() + 5.0  # one bound for all: a worker in connect() or getaddrinfo() ends on its own
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stop_r = self._stop_w = -1

    def _accept_loop(self) -> None:
        assert self._listener is not None
        poller = select.poll()
        poller.register(self._listener.fileno(), select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready:
                return
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # out of descriptors: the waiting clients wait
                    continue
                return
            if not self._slots.acquire(blocking=False):
                conn.close()  # over this sandbox's connection limit
                continue
            with self._lock:
                reuse = self._idle > 0
                if reuse:
                    self._idle -= 1
            if reuse:
                self._queue.put(conn)
                continue
            t = threading.Thread(target=self._work, args=(conn,), name="isolation-egress-conn", daemon=True)
            with self._lock:
                self._workers.add(t)
            t.start()

    def _work(self, conn: socket.socket | None) -> None:
        """Serve connections one after another until stop()."""
        while conn is not None:
            self._handle(conn)
            with self._lock:
                self._idle += 1
            conn = self._queue.get()
        with self._lock:
            self._workers.discard(threading.current_thread())

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.add(s)

    def _untrack(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.discard(s)
        s.close()

    def _record(self, rec: NetworkRecord) -> int:
        with self._lock:
            self._log.append(rec)
            return len(self._log) - 1

    def _log_sent(self, index: int) -> int:
        with self._lock:
            return self._log[index].sent

    def _update(self, index: int, sent: int, received: int) -> None:
        with self._lock:
            self._log[index] = attrs.evolve(self._log[index], sent=sent, received=received)

    # -- one connection --------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        self._track(conn)
        upstream: socket.socket | None = None
        try:
            conn.setblocking(True)
            deadline = time.monotonic() + self.limits.header_timeout
            first = _recv_exact(conn, 1, deadline)
            if first == b"\x05":
                upstream, index = self._socks5(conn, deadline)
            else:
                upstream, index = self._http(conn, first, deadline)
            if upstream is not None:
                sent, received = self._relay(conn, upstream)
                self._update(index, self._log_sent(index) + sent, received)
        except (OSError, _BadRequest, TimeoutError):
            pass
        finally:
            if upstream is not None:
                self._untrack(upstream)
            self._untrack(conn)
            self._slots.release()

    def _decide(self, protocol: str, host: str, port: int) -> tuple[socket.socket, int]:
        """Check, resolve, check again, connect; log either way. Raises _Refused or OSError."""
        now = time.time()
        verdict = check_request(self.rules, host, port)
        if not verdict.allowed:
            self._record(NetworkRecord(protocol, host, port, None, False, verdict.rule, time=now))
            raise _Refused(verdict.rule)
        try:
            addrs = self._resolve(host.strip("[]"), port)
        except OSError as exc:
            rule = f"{host} did not resolve ({exc.strerror or exc})"
            self._record(NetworkRecord(protocol, host, port, None, False, rule, time=now))
            raise _Refused(rule) from None
        refused: Verdict | None = None
        refused_addr: IPAddress | None = None
        for addr in addrs:
            v = check_address(self.rules, addr, port, allow_local=self.allow_local, named_by=verdict.rule)
            if not v.allowed:
                refused, refused_addr = refused or v, refused_addr or addr
                continue
            try:
                up = socket.create_connection((str(addr), port), timeout=self.limits.connect_timeout)
            except OSError:
                continue
            up.settimeout(None)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(up)
            index = self._record(NetworkRecord(protocol, host, port, str(addr), True, v.rule, time=now))
            return up, index
        if refused is not None:
            self._record(NetworkRecord(protocol, host, port, str(refused_addr), False, refused.rule, time=now))
            raise _Refused(refused.rule, str(refused_addr))
        self._record(NetworkRecord(protocol, host, port, None, True, f"{verdict.rule} (connect failed)", time=now))
        raise ConnectionRefusedError(errno.ECONNREFUSED, f"cannot connect to {host}:{port}")

    def _refusal_body(self, host: str, port: int, rule: str) -> bytes:
        return (
            f"isolation egress proxy: refused {host}:{port}: {rule}.\n"
            f"policy: {self.policy_text()}\n"
            "Add an entry with Network(allow=...) / --allow-host (docs/network.md).\n"
        ).encode()

    def _http(self, conn: socket.socket, first: bytes, deadline: float) -> tuple[socket.socket | None, int]:
        head = _read_head(conn, first, self.limits.max_header, deadline)
        line, _, rest = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            _reply(conn, 400, b"isolation egress proxy: malformed request line\n")
            return None, -1
        method, target, version = (p.decode("latin-1") for p in parts)
        slash, path = "", ""
        try:
            if method.upper() == "CONNECT":
                host, port = _host_port(target, None)
                protocol = "connect"
            elif target.lower().startswith("http://"):
                authority, slash, path = target[7:].partition("/")
                host, port = _host_port(authority, 80)
                protocol = "http"
            else:
                raise _BadRequest("only absolute http:// URIs are forwarded; use CONNECT for anything else")
        except _BadRequest as exc:
            _reply(conn, 400, f"isolation egress proxy: {exc}\n".encode())
            return None, -1
        try:
            up, index = self._decide(protocol, host, port)
        except _Refused as r:
            _reply(conn, 403, self._refusal_body(host, port, r.rule))
            return None, -1
        except OSError:
            _reply(conn, 502, f"isolation egress proxy: cannot connect to {host}:{port}\n".encode())
            return None, -1
        if protocol == "connect":
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            request = _origin_request(method, "/" + path if slash else "/", version, rest)
            up.sendall(request)
            self._update(index, len(request), 0)
        return up, index

    def _socks5(self, conn: socket.socket, deadline: float) -> tuple[socket.socket | None, int]:
        n = _recv_exact(conn, 1, deadline)[0]
        methods = _recv_exact(conn, n, deadline)
        if 0 not in methods:
            conn.sendall(b"\x05\xff")
            return None, -1
        conn.sendall(b"\x05\x00")
        ver, cmd, _, atyp = _recv_exact(conn, 4, deadline)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(_recv_exact(conn, 4, deadline)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(_recv_exact(conn, 16, deadline)))
        elif atyp == 3:
            host = _recv_exact(conn, _recv_exact(conn, 1, deadline)[0], deadline).decode("latin-1")
        else:
            conn.sendall(b"\x05\x08\x00\x01" + bytes(6))  # address type not supported
            return None, -1
        port = struct.unpack("!H", _recv_exact(conn, 2, deadline))[0]
        if ver != 5 or cmd != 1:
            conn.sendall(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
            return None, -1
        try:
            up, index = self._decide("socks5", host, port)
        except _Refused:
            conn.sendall(b"\x05\x02\x00\x01" + bytes(6))  # connection not allowed by ruleset
            return None, -1
        except OSError:
            conn.sendall(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
            return None, -1
        conn.sendall(b"\x05\x00\x00\x01" + bytes(6))
        return up, index

    def _relay(self, a: socket.socket, b: socket.socket) -> tuple[int, int]:
        """Copy both ways until both sides are done, or nothing moved for `idle_timeout`;
        returns (a->b bytes, b->a bytes). One thread, poll(), and splice() through a pipe per
        direction, so the bytes never pass through Python (the throughput target of
        benchmarks/bench_egress.py)."""
        for s in (a, b):
            s.setblocking(False)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF) if _SOCKBUF else ():  # fewer, larger wake-ups
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, opt, _SOCKBUF)
        ways = [_Way(a, b), _Way(b, a)]
        try:
            while not all(w.done for w in ways):
                poller = select.poll()
                wanted: dict[int, int] = {}
                for w in ways:
                    fd, event = w.wants()
                    if fd >= 0:
                        wanted[fd] = wanted.get(fd, 0) | event
                for fd, event in wanted.items():
                    poller.register(fd, event)
                if not poller.poll(int(self.limits.idle_timeout * 1000)):
                    break  # idle too long
                for w in ways:
                    w.step()
        except OSError:
            pass
        finally:
            for w in ways:
                w.close()
        return ways[0].count, ways[1].count


_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


class _Way:
    """One direction of a relay: src -> pipe -> dst with splice(), the data staying in the kernel."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, _BUF)
        self.pending = 0  # bytes in the pipe
        self.eof = False
        self.done = False
        self.count = 0

    def wants(self) -> tuple[int, int]:
        if self.done:
            return -1, 0
        if self.pending:
            return self.dst.fileno(), select.POLLOUT
        return self.src.fileno(), select.POLLIN

    def step(self) -> None:
        """Move what can move now: read and write in turn until one side would block
        (each poll() wake-up then carries as many bytes as the kernel has ready)."""
        if self.done:
            return
        while True:
            if not self.pending and not self.eof:
                try:
                    n = os.splice(self.src.fileno(), self.w, _BUF, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    return
                except OSError:  # reset by the peer: the end of this direction
                    n = 0
                if n == 0:
                    self.eof = True
                else:
                    self.pending = n
            while self.pending:
                try:
                    m = os.splice(self.r, self.dst.fileno(), self.pending, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    return
                self.pending -= m
                self.count += m
            if self.eof:
                break
        if self.eof:
            self.done = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.r = self.w = -1
        self.done = True


def _resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    return out


def _recv_exact(conn: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request too slow")
        conn.settimeout(remaining)
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise _BadRequest("closed")
        data += chunk
    return data


def _read_head(conn: socket.socket, first: bytes, limit: int, deadline: float) -> bytes:
    """The request head up to and including the blank line; bounded in size and time."""
    data = bytearray(first)
    while b"\r\n\r\n" not in data:
        if len(data) > limit:
            _reply(conn, 431, b"isolation egress proxy: request head too large\n")
            raise _BadRequest("head too large")
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError("slow head")
            conn.settimeout(remaining)
            chunk = conn.recv(4096)
        except TimeoutError:
            _reply(conn, 408, b"isolation egress proxy: request head too slow\n")
            raise
        if not chunk:
            raise _BadRequest("closed")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    if end > limit:
        _reply(conn, 431, b"isolation egress proxy: request head too large\n")
        raise _BadRequest("head too large")
    # Bytes after the head (a body already sent) go along with it.
    return bytes(data)


def _host_port(authority: str, default: int | None) -> tuple[str, int]:
    if "@" in authority:
        raise _BadRequest("credentials in the authority")
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        if default is None:
            raise _BadRequest("CONNECT needs host:port")
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _BadRequest("bad port")
    return host, int(port_text)


_HOP_BY_HOP = (b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive")


def _origin_request(method: str, path: str, version: str, rest: bytes) -> bytes:
    """The request for the origin server: origin-form target, no proxy headers, one request per connection."""
    head, _, body = rest.partition(b"\r\n\r\n")
    lines = [h for h in head.split(b"\r\n") if h and h.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    out = [f"{method} {path} {version}".encode(), *lines, b"Connection: close"]
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def _reply(conn: socket.socket, status: int, body: bytes) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Bad Gateway')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with contextlib.suppress(OSError):
        conn.settimeout(2.0)
        conn.sendall(head + body)


# -- the hand-over from inside the sandbox -------------------------------------------


def helper_path() -> str:
    """The static program that makes the listener inside the sandbox (native/egress_listen.c)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), HELPER_NAME)
    if not os.access(path, os.X_OK):
        raise SandboxSetupError(
            f"the egress helper {path} is missing; rebuild the package (`pip install .` or "
            "`python setup.py build_ext --inplace`)",
            step="egress",
            errno=errno.ENOENT,
        )
    return path


class EgressSession:
    """One run's egress: a private directory the sandbox sees at MOUNT_DIR holding the helper
    and a unix socket with an unguessable name; the helper, run first inside the sandbox,
    makes the listener on 127.0.0.1:PROXY_PORT there and sends it over that socket, then
    waits for the caller's ack before it executes the command. The caller takes exactly one
    listener (then closes the socket) and serves it with an `EgressProxy`."""

    def __init__(self, rules: tuple[EgressRule, ...], allow_local: bool, limits: ProxyLimits | None = None) -> None:
        self.proxy = EgressProxy(rules, allow_local, limits=limits)
        self.helper = helper_path()
        self.dir = tempfile.mkdtemp(prefix="isolation-egress-")
        try:
            os.chmod(self.dir, 0o711)  # traversable by the sandbox's user, not listable
            # The mount point of the helper, bound over it read-only: never a copy, whose
            # descriptor open for writing a concurrent fork could hold (execve: ETXTBSY).
            os.close(os.open(os.path.join(self.dir, "listen"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            self.sock_name = os.urandom(16).hex()
            self._unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self._unix.bind(os.path.join(self.dir, self.sock_name))
            os.chmod(os.path.join(self.dir, self.sock_name), 0o666)
            self._unix.listen(1)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.handed_over = False  # whether the helper's listener arrived (the command runs only after)
        self._thread = threading.Thread(target=self._take_listener, name="isolation-egress-handover", daemon=True)
        self._closed = threading.Event()
        self._thread.start()

    def claim(self) -> str:
        """The `enforced` entry: the allowlist, by digest (its entries are in the plan)."""
        return f"network:allowlist:sha256={self.proxy.digest}"

    def wrap_argv(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        return (f"{MOUNT_DIR}/listen", f"{MOUNT_DIR}/{self.sock_name}", str(PROXY_PORT), "--", *argv)

    def _take_listener(self) -> None:
        try:
            poller = select.poll()
            poller.register(self._unix.fileno(), select.POLLIN)
            while not self._closed.is_set():
                if not poller.poll(100):
                    continue
                conn, _ = self._unix.accept()
                with conn:
                    conn.settimeout(10.0)
                    listener = _receive_listener(conn)
                    if listener is None:
                        continue
                    self._unix.close()  # exactly one listener: nobody else can hand one over
                    self.proxy.serve(listener)
                    self.handed_over = True
                    conn.sendall(b"k")  # the helper may now execute the command
                return
        except OSError:
            return

    def close(self) -> tuple[NetworkRecord, ...]:
        """Stop the proxy, free everything; return the log."""
        self._closed.set()
        self._thread.join()
        with contextlib.suppress(OSError):
            self._unix.close()
        self.proxy.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proxy.log


def _receive_listener(conn: socket.socket) -> socket.socket | None:
    """The listening TCP socket the helper sent (SCM_RIGHTS), checked to be one."""
    fds: list[int] = []
    try:
        msg, anc, _, _ = conn.recvmsg(16, socket.CMSG_SPACE(4 * 4))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4]))
    except OSError:
        pass
    if len(fds) != 1 or msg != b"L":
        for fd in fds:
            os.close(fd)
        return None
    s = socket.socket(fileno=fds[0])
    ok = (
        s.family == socket.AF_INET
        and s.type == socket.SOCK_STREAM
        and s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        and s.getsockname() == ("127.0.0.1", PROXY_PORT)
    )
    if not ok:
        s.close()
        return None
    return s


def egress_plan(plan: SandboxPlan, session: EgressSession) -> SandboxPlan:
    """`plan` for one run with egress: the helper first, its directory bound at MOUNT_DIR,
    the proxy variables set. The network namespace stays private (plan.network is False)."""
    env = dict(plan.env)
    env.update(proxy_env())
    mounts = (
        Mount("ro-bind", MOUNT_DIR, source=session.dir, origin="network"),
        Mount("ro-bind", f"{MOUNT_DIR}/listen", source=session.helper, origin="network"),
    )
    return attrs.evolve(
        plan,
        argv=session.wrap_argv(plan.argv),
        executable=(f"{MOUNT_DIR}/listen", session.helper),
        mounts=(*plan.mounts, *mounts),
        env=tuple(env.items()),
    )
