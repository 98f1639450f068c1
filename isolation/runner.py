"""Running a command in a sandbox: `run`, `spawn` (a Popen-like handle) and `run_async`."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import attrs

from isolation.backends import (
    RESOLUTION_ENV,
    Backend,
    Enforcement,
    Launched,
    Stdio,
    resolve_backend,
    warn_unisolated,
)
from isolation.backends.none import NoneBackend
from isolation.errors import IsolationUnavailable, PolicyError, SandboxSetupError
from isolation.limits import Limits
from isolation.paths import is_executable_file
from isolation.plan import SandboxPlan, build_plan, program_still_found
from isolation.policy import IsolationPolicy
from isolation.result import Outcome, RunResult, Usage

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
# After the command has exited, how long to keep reading output that a
# straggler (only possible without a pid namespace) still holds open.
_DRAIN_GRACE = 1.0

# Limits the runner itself enforces for run()/run_async(), whatever the backend.
RUNNER_LIMITS = frozenset({"wall_timeout", "max_output"})

_CHUNK = 65536


@attrs.frozen
class Relay:
    """stdin=, stdout= or stderr= of `run`: the runner copies between this descriptor of the
    caller and a pipe of the sandbox, so the sandbox never holds the caller's own file.

    Output is relayed live, bounded by `limits.max_output` as captured output is. Input is
    read from `fd` as it arrives and relayed until the command ends (what it did not read is
    dropped). Use it for a terminal or any file the command must not get a descriptor of:
    whoever holds a descriptor can change the file's mode, owner and times (fchmod, fchown,
    futimens) wherever its owner is the sandbox's user on the host.
    """

    fd: int


StdinArg = None | int | IO[Any]
OutArg = None | int | IO[Any]


def _fd_of(spec: int | IO[Any]) -> int:
    return spec if isinstance(spec, int) else spec.fileno()


@attrs.define
class _Sink:
    """One output stream of a sandbox being drained: kept in memory, or relayed to `to`."""

    name: str
    file: IO[bytes]  # the runner's read end
    limit: int | None
    to: int = -1  # the caller's descriptor, or -1: keep in memory
    kill_past: bool = False  # passing `limit` kills the sandbox (a reply that can no longer be valid)
    kept: int = 0
    dropped: int = 0
    chunks: list[bytes] = attrs.Factory(list)
    pending: memoryview = memoryview(b"")
    reading: bool = True
    step: int = _CHUNK  # bytes per write to `to` that cannot block once it polls writable

    def take(self, data: bytes) -> bool:
        """Keep or relay what the limit allows, drop the rest; True when it was passed just now."""
        room = len(data) if self.limit is None else max(0, self.limit - self.kept)
        kept = data[:room] if room < len(data) else data
        if kept:
            self.kept += len(kept)
            if self.to >= 0:
                self.pending = memoryview(kept)
            else:
                self.chunks.append(kept)
        passed = self.dropped == 0 and len(kept) < len(data)
        self.dropped += len(data) - len(kept)
        return passed

    def stop(self) -> None:
        """Stop draining: the sandbox's next write to this stream fails (EPIPE/SIGPIPE), as
        its write to a closed pipe of the caller would have."""
        self.reading = False
        self.pending = memoryview(b"")
        with contextlib.suppress(OSError):
            self.file.close()


def _write_step(fd: int) -> int:
    """Bytes one write to `fd` may carry without blocking once poll() calls it writable:
    PIPE_BUF for a pipe, socket or terminal (the caller's own descriptors stay blocking:
    their O_NONBLOCK flag is shared with whoever else holds them)."""
    try:
        return _CHUNK if stat.S_ISREG(os.fstat(fd).st_mode) else select.PIPE_BUF
    except OSError:
        return select.PIPE_BUF


class Sandbox:
    """A running sandbox, shaped like subprocess.Popen.

    `stdin`/`stdout`/`stderr` are binary file objects when PIPE was requested.
    Use it as a context manager: leaving the block kills whatever is still
    running and reaps it, so no process or descriptor outlives the handle.
    """

    def __init__(
        self,
        argv: tuple[str, ...],
        backend: str,
        launched: Launched,
        pipes: dict[str, IO[bytes]],
        discard: Sequence[IO[bytes]] = (),
    ) -> None:
        self.argv = argv
        self.backend = backend
        self.enforced = launched.enforced
        self.missing = launched.missing
        self._child = launched.child
        self.stdin: IO[bytes] | None = pipes.get("stdin")
        self.stdout: IO[bytes] | None = pipes.get("stdout")
        self.stderr: IO[bytes] | None = pipes.get("stderr")
        self.returncode: int | None = None
        self.started = time.monotonic()
        self._closed = False
        # A backend that knows the sandbox's end first offers a descriptor for it; else a pidfd.
        self._pidfd = -1 if hasattr(self._child, "exit_fd") else os.pidfd_open(self._child.pid)
        self._discarder: threading.Thread | None = None
        if discard:  # DEVNULL outputs: read and dropped until the sandbox's end
            self._discarder = threading.Thread(target=_discard, args=(tuple(discard),), name="isolation-devnull")
            self._discarder.daemon = True
            self._discarder.start()

    @property
    def pid(self) -> int:
        return self._child.pid

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._child.poll()
            if self.returncode is not None:
                self._close_pidfd()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        # Asked even when poll() saw the end: the backend may still be finishing it in another thread.
        rc = self._child.wait(timeout)
        if self.returncode is None:
            self.returncode = rc
            self._close_pidfd()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            self._child.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        """Kill the whole sandbox tree (not only the direct child)."""
        if self.returncode is None:
            self._child.kill()

    def usage(self) -> Usage | None:
        """CPU time and peak RSS as the backend measured them, once the sandbox has ended; None if unmeasured."""
        measure = getattr(self._child, "usage", None)
        return None if self.returncode is None or measure is None else measure()

    def backend_limits_hit(self) -> tuple[str, ...]:
        """Limits the backend saw the sandbox run into (e.g. a fork refused by a pids cgroup), once it ended."""
        seen = getattr(self._child, "limits_hit", None)
        return () if self.returncode is None or seen is None else tuple(seen())

    @property
    def term_signal(self) -> int | None:
        """The signal that ended the command, if any (None while it runs).

        bubblewrap reports a command killed by signal N as exit status 128+N, so
        with the bwrap backend an exit status 129..192 is read as signal 1..64.
        """
        rc = self.returncode
        if rc is None:
            return None
        if rc < 0:
            return -rc
        if getattr(self._child, "status_is_shell_style", False) and 128 < rc <= 128 + 64:
            return rc - 128
        return None

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Send `input`, read all output, wait. On timeout the sandbox is killed and
        subprocess.TimeoutExpired raised with the output collected so far."""
        out, err, timed_out = self._collect(input, None if timeout is None else time.monotonic() + timeout)[:3]
        if timed_out:
            raise subprocess.TimeoutExpired(list(self.argv), timeout or 0.0, out, err)
        return out, err

    def _collect(
        self, input: bytes | None, deadline: float | None, max_output: int | None = None
    ) -> tuple[bytes, bytes, bool, bool]:
        """Feed stdin, drain stdout/stderr and wait, all against one deadline.

        Returns (stdout, stderr, timed_out, truncated). At most `max_output` bytes
        per stream are kept (the rest is read and dropped, so the command never
        blocks on a full pipe, and a marker is appended).
        """
        sinks = [_Sink(n, f, max_output) for n, f in (("stdout", self.stdout), ("stderr", self.stderr)) if f]
        timed_out = self._pump(input, sinks, deadline)
        out, err = _captured(sinks, self.stdout, self.stderr)
        return out, err, timed_out, any(s.dropped for s in sinks)

    def _pump(
        self, feed: bytes | Relay | None, sinks: Sequence[_Sink], deadline: float | None, signals_fd: int = -1
    ) -> bool:
        """Move data between the caller and the sandbox until it has ended and its output is drained.

        `feed` goes to stdin: bytes, or a caller descriptor relayed until the end. Each sink
        keeps or relays its stream (see _Sink). At the deadline the sandbox is killed (the
        return value says so) and what it wrote is still drained. Output written after the
        end is read for at most `_DRAIN_GRACE` seconds (only a process that escaped the
        sandbox's pid namespace, i.e. under backend none, can hold a pipe that long).
        Signal numbers arriving on `signals_fd` (a signal.set_wakeup_fd pipe) are sent to
        the command; after its end they give up on the streams a caller is not reading.
        """
        for sink in sinks:
            os.set_blocking(sink.file.fileno(), False)
            if sink.to >= 0:
                sink.step = _write_step(sink.to)
        pending = memoryview(feed if isinstance(feed, bytes) else b"")
        source = feed.fd if isinstance(feed, Relay) else -1  # the caller's descriptor relayed to stdin
        stdin_fd = -1 if self.stdin is None or self.stdin.closed else self.stdin.fileno()
        if stdin_fd >= 0 and not pending and source < 0:
            self._close_stdin()
            stdin_fd = -1
        if stdin_fd >= 0:
            os.set_blocking(stdin_fd, False)
        timed_out = False
        exited_at: float | None = None if self.returncode is None else time.monotonic()
        # Readable once the backend knows the sandbox's end (its own report, or the exit).
        exit_fd = int(getattr(self._child, "exit_fd", self._pidfd))
        if exited_at is None and (exit_fd < 0 or self.returncode is not None):
            self.poll()  # another thread saw the end meanwhile and closed that descriptor
            exited_at = time.monotonic()
        while True:
            if exited_at is not None and stdin_fd >= 0:  # nobody reads stdin any more
                self._close_stdin()
                stdin_fd = source = -1
            if exited_at is not None and not any(s.reading or s.pending for s in sinks):
                break
            wanted: list[tuple[int, int]] = []  # (descriptor, what it is waited for)
            if exited_at is None:
                wanted.append((exit_fd, select.POLLIN))
            if signals_fd >= 0:
                wanted.append((signals_fd, select.POLLIN))
            if stdin_fd >= 0 and pending:
                wanted.append((stdin_fd, select.POLLOUT))
            elif stdin_fd >= 0 and source >= 0:
                wanted.append((source, select.POLLIN))
            for sink in sinks:
                if sink.pending:
                    wanted.append((sink.to, select.POLLOUT))
                elif sink.reading:
                    wanted.append((sink.file.fileno(), select.POLLIN))
            events: dict[int, int] = {}
            for fd, event in wanted:
                events[fd] = events.get(fd, 0) | event
            limit = None if exited_at is not None else deadline
            if exited_at is not None and any(s.reading for s in sinks):
                limit = exited_at + _DRAIN_GRACE
            wait_ms = None
            if limit is not None:
                now = time.monotonic()
                if now >= limit:
                    if exited_at is None:  # the deadline: kill, then drain what it wrote
                        timed_out = True
                        deadline = None
                        self.kill()
                    else:  # the grace after the end is over: stop reading, relay what is held
                        for sink in sinks:
                            if sink.reading:
                                sink.reading = False
                    continue
                wait_ms = math.ceil((limit - now) * 1000)
            poller = select.poll()  # no descriptor of its own, unlike epoll
            for fd, event in events.items():
                poller.register(fd, event)
            ready = poller.poll(wait_ms)
            for fd, _ in ready:
                if fd == exit_fd and exited_at is None:
                    self.poll()
                    exited_at = time.monotonic()
                    continue
                if fd == signals_fd:
                    sigs = _read_some(fd)
                    if exited_at is None:
                        for sig in sigs:
                            self.send_signal(sig)
                    elif sigs and len(ready) == 1:  # after the end, with nothing else moving:
                        for sink in sinks:  # give up on a caller that does not read
                            if sink.pending:
                                sink.stop()
                    continue
                if fd == stdin_fd and pending:
                    try:
                        n = os.write(fd, pending[:_CHUNK])
                    except BlockingIOError:
                        n = 0
                    except BrokenPipeError:  # the command closed its stdin
                        n, source = len(pending), -1
                    pending = pending[n:]
                    if not pending and source < 0:
                        self._close_stdin()
                        stdin_fd = -1
                    continue
                if fd == source and not pending:
                    try:
                        data = os.read(fd, _CHUNK)
                    except OSError:  # e.g. EIO from a terminal that hung up: its end
                        data = b""
                    if data:
                        pending = memoryview(data)
                    else:
                        source = -1
                        self._close_stdin()
                        stdin_fd = -1
                    continue
                for sink in sinks:
                    if sink.pending and fd == sink.to:
                        try:
                            n = os.write(fd, sink.pending[: sink.step])
                        except BlockingIOError:
                            n = 0
                        except OSError:  # the caller's end is gone: the command's next write fails too
                            sink.stop()
                            break
                        sink.pending = sink.pending[n:]
                        break
                    if sink.reading and not sink.pending and fd == sink.file.fileno():
                        try:
                            data = os.read(fd, _CHUNK)
                        except BlockingIOError:
                            break
                        if not data:
                            sink.reading = False
                        elif sink.take(data) and sink.kill_past:
                            self.kill()
                        break
        self.wait()
        self._close_stdin()
        return timed_out

    def _close_stdin(self) -> None:
        if self.stdin is not None and not self.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.stdin.close()

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def close(self) -> None:
        """Kill anything still running, reap it, and release every descriptor."""
        if self.poll() is None:
            self.kill()
            self.wait()
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None and not f.closed:
                with contextlib.suppress(OSError):
                    f.close()
        self._close_pidfd()
        if self._discarder is not None:  # at EOF now, unless a straggler of backend none holds the pipe
            self._discarder.join(_DRAIN_GRACE)
        self._closed = True
        release = getattr(self._child, "release", None)
        if release is not None:
            release()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


def _discard(files: tuple[IO[bytes], ...]) -> None:
    """Read and drop until every writer is gone, then close."""
    poller = select.poll()
    live = {f.fileno(): f for f in files}
    for fd in live:
        poller.register(fd, select.POLLIN)
    while live:
        for fd, _ in poller.poll():
            if not os.read(fd, _CHUNK):
                poller.unregister(fd)
                live.pop(fd).close()


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 512)
    except BlockingIOError:
        return b""


def _captured(sinks: Sequence[_Sink], stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> tuple[bytes, bytes]:
    """What stdout and stderr kept in memory, with a marker where the limit dropped the rest."""
    out = []
    for f in (stdout, stderr):
        sink = next((s for s in sinks if s.file is f), None)
        data = b"" if sink is None else b"".join(sink.chunks)
        if sink is not None and sink.to < 0 and sink.dropped and not sink.kill_past:
            data += b"\n[isolation: output truncated at %d bytes; %d more bytes dropped]\n" % (sink.kept, sink.dropped)
        out.append(data)
    return out[0], out[1]


@attrs.frozen
class _Options:
    backend: str | None = "auto"
    cwd: str | None = None
    enforcement: Enforcement = "strict"
    unsafe_no_isolation: bool = False
    require_isolation: bool | None = None


def spawn(
    cmd: Sequence[str],
    policy: IsolationPolicy | None = None,
    *,
    backend: str | None = "auto",
    stdin: StdinArg = None,
    stdout: OutArg = PIPE,
    stderr: OutArg = PIPE,
    cwd: str | None = None,
    enforcement: Enforcement = "strict",
    unsafe_no_isolation: bool = False,
    require_isolation: bool | None = None,
) -> Sandbox:
    """Start `cmd` under `policy` (default: the strict baseline) and return a handle.

    stdin: None (empty: EOF at once), DEVNULL (the same), PIPE, a descriptor or a
    file. stdout/stderr: PIPE (default), DEVNULL (a pipe the runner drains), None
    (inherit the caller's), a descriptor or a file. None, DEVNULL and PIPE are pipes
    of the sandbox's own; a descriptor or file the caller passes (or inherits) is the
    caller's file, which the command can fchmod/fchown/futimens wherever the sandbox's
    user owns it on the host (docs/guide.md, "Your own files as stdio").
    `cwd` is a path inside the sandbox (default /work); for backend none, a host path.
    """
    opts = _Options(backend, cwd, enforcement, unsafe_no_isolation, require_isolation)
    return _spawn(tuple(cmd), policy or IsolationPolicy(), opts, stdin, stdout, stderr)


@attrs.frozen
class _Recipe:
    """What a call resolves before anything is spawned: the backend, the plan, and
    the limits that backend cannot enforce."""

    backend: Backend
    plan: SandboxPlan
    warn_unisolated: bool
    unenforceable: tuple[str, ...]

    def still_valid(self) -> bool:
        """Whether the host still matches: the bind sources exist (PolicyError if
        not, as on a first run) and the executable found is still one."""
        self.plan.policy.check_host_paths()
        exe = self.plan.executable
        return (exe is None or is_executable_file(exe[1])) and program_still_found(self.plan)


# Recipes per (command, policy, options, the environment variables they read): resolving the
# backend and planning cost more than the rest of starting a prepared sandbox.
_recipes: dict[tuple[object, ...], _Recipe] = {}
_RECIPES_MAX = 64


def _recipe(argv: tuple[str, ...], policy: IsolationPolicy, opts: _Options) -> _Recipe:
    env = os.environ
    try:
        key = (argv, policy, opts, env.get("PATH"), *map(env.get, RESOLUTION_ENV), *map(env.get, policy.env_allowlist))
        recipe = _recipes.get(key)
    except (TypeError, AttributeError):  # not a valid call: _make_recipe says why
        return _make_recipe(argv, policy, opts)
    if recipe is None or not recipe.still_valid():
        recipe = _make_recipe(argv, policy, opts)
        if len(_recipes) >= _RECIPES_MAX:
            _recipes.clear()
        _recipes[key] = recipe
    return recipe


def _make_recipe(argv: tuple[str, ...], policy: IsolationPolicy, opts: _Options) -> _Recipe:
    if isinstance(argv, str | bytes) or not argv:
        raise PolicyError("cmd must be a non-empty sequence of arguments, e.g. ['sh', '-c', 'echo hi']")
    if opts.enforcement not in ("strict", "best_effort"):
        raise PolicyError(f"enforcement must be 'strict' or 'best_effort', not {opts.enforcement!r}")
    resolution = resolve_backend(
        opts.backend, unsafe_no_isolation=opts.unsafe_no_isolation, require_isolation=opts.require_isolation
    )
    backend = resolution.backend
    is_none = isinstance(backend, NoneBackend)
    # A relative argv[0] is found from cwd: build_plan applies cwd before it checks the command.
    plan = build_plan(policy, argv, check_executable=not is_none, cwd=None if is_none else opts.cwd)
    if opts.cwd is not None and is_none:
        backend = NoneBackend(host_cwd=opts.cwd)
    unenforceable = tuple(
        name
        for name in policy.limits.requested()
        if name not in RUNNER_LIMITS and name not in getattr(backend, "enforced_limits", frozenset())
    )
    if unenforceable and opts.enforcement == "strict":
        raise IsolationUnavailable(
            f"backend {backend.name} cannot enforce limits.{', limits.'.join(unenforceable)}; "
            "drop them or pass enforcement='best_effort' (CLI --best-effort) to run without them"
        )
    return _Recipe(backend, plan, resolution.warn_unisolated, unenforceable)


def _spawn(
    argv: tuple[str, ...], policy: IsolationPolicy, opts: _Options, stdin: StdinArg, stdout: OutArg, stderr: OutArg
) -> Sandbox:
    recipe = _recipe(argv, policy, opts)
    backend, plan, unenforceable = recipe.backend, recipe.plan, recipe.unenforceable
    if recipe.warn_unisolated:
        warn_unisolated(argv[0])

    parent_ends: dict[str, IO[bytes]] = {}
    discard: list[IO[bytes]] = []
    child_fds: list[int] = []
    to_close: list[int] = []
    try:

        def child_end(name: str, spec: StdinArg, inherit: int) -> int:
            if isinstance(spec, Relay):
                raise PolicyError(f"{name}=Relay(...) is for run(); with spawn() pass PIPE and copy the data yourself")
            if spec in (PIPE, DEVNULL) or (spec is None and name == "stdin"):
                # Never the host's /dev/null: a sandbox whose user owns it on the host (a root
                # caller's) could change its mode through the descriptor. An empty pipe reads as
                # EOF; a DEVNULL output is a pipe the runner drains.
                r, w = os.pipe2(os.O_CLOEXEC)
                mine, theirs = (w, r) if name == "stdin" else (r, w)
                to_close.append(theirs)
                if spec == PIPE:
                    parent_ends[name] = os.fdopen(mine, "wb" if name == "stdin" else "rb", buffering=0)
                elif name == "stdin":
                    os.close(mine)
                else:
                    discard.append(os.fdopen(mine, "rb", buffering=0))
                return theirs
            if spec is None:
                return inherit
            return _fd_of(spec)

        child_fds = [child_end("stdin", stdin, 0), child_end("stdout", stdout, 1), child_end("stderr", stderr, 2)]
        launched = backend.launch(plan, Stdio(*child_fds), enforcement=opts.enforcement)
    except BaseException as exc:
        for f in (*parent_ends.values(), *discard):
            f.close()
        if isinstance(exc, OSError):  # the caller ran out of descriptors or processes
            raise _setup_error(exc) from exc
        raise
    finally:
        for fd in to_close:
            os.close(fd)
    if unenforceable:
        launched = attrs.evolve(launched, missing=(*launched.missing, *(f"limit:{n}" for n in unenforceable)))
    try:
        return Sandbox(argv, backend.name, launched, parent_ends, discard)
    except BaseException as exc:
        launched.child.kill()
        launched.child.wait()
        for f in (*parent_ends.values(), *discard):
            f.close()
        if isinstance(exc, OSError):
            raise _setup_error(exc) from exc
        raise


def _setup_error(exc: OSError) -> SandboxSetupError:
    return SandboxSetupError(
        f"cannot start the sandbox: {exc.strerror or exc} (each running sandbox holds about 4 descriptors "
        "of the caller, about 10 while it starts)",
        step="launch",
        errno=exc.errno or 0,
    )


def _stdin_for_run(stdin: bytes | str | StdinArg | Relay) -> tuple[StdinArg, bytes | Relay | None]:
    if isinstance(stdin, str):
        return PIPE, stdin.encode()
    if isinstance(stdin, bytes | bytearray | memoryview):
        return PIPE, bytes(stdin)
    if isinstance(stdin, Relay):
        return PIPE, stdin
    return stdin, None


def run(
    cmd: Sequence[str],
    policy: IsolationPolicy | None = None,
    *,
    backend: str | None = "auto",
    stdin: bytes | str | StdinArg | Relay = None,
    timeout: float | None = None,
    cwd: str | None = None,
    enforcement: Enforcement = "strict",
    unsafe_no_isolation: bool = False,
    require_isolation: bool | None = None,
    stdout: OutArg | Relay = PIPE,
    stderr: OutArg | Relay = PIPE,
) -> RunResult:
    """Run `cmd` under `policy` and wait for it; output is captured unless redirected.

    stdin: None (empty), bytes/str, or `Relay(fd)`; stdout/stderr: PIPE (captured,
    at most `limits.max_output` bytes each) or `Relay(fd)` (relayed live under the
    same bound). Passing a descriptor or file of your own instead hands it to the
    command: see `spawn`. Raises IsolationError (nothing ran) when the policy is
    invalid or cannot be enforced. A timeout kills the whole sandbox; the result's
    outcome is then ``timeout``.
    """
    opts = _Options(backend, cwd, enforcement, unsafe_no_isolation, require_isolation)
    return _run(tuple(cmd), policy or IsolationPolicy(), opts, stdin, timeout, stdout, stderr)


def _run(
    argv: tuple[str, ...],
    policy: IsolationPolicy,
    opts: _Options,
    stdin: bytes | str | StdinArg | Relay,
    timeout: float | None,
    stdout: OutArg | Relay,
    stderr: OutArg | Relay,
    started: Callable[[Sandbox], None] | None = None,
    *,
    reply_limit: int | None = None,
    signals_fd: int = -1,
    truncated_streams: list[tuple[str, int, int]] | None = None,
) -> RunResult:
    """`run`, plus what the CLI and the stage executor need: `started` is called with the
    sandbox once it runs; past `reply_limit` bytes of stdout the sandbox is killed (stdout
    then holds reply_limit + 1 bytes, no marker); signals on `signals_fd` (a set_wakeup_fd
    pipe) go to the command; each stream the limit cut is appended to `truncated_streams`
    as (name, kept, dropped)."""
    spec, feed = _stdin_for_run(stdin)
    start = time.monotonic()
    timeout = _effective_timeout(timeout, policy)
    out_spec = PIPE if isinstance(stdout, Relay) else stdout
    err_spec = PIPE if isinstance(stderr, Relay) else stderr
    with _spawn(argv, policy, opts, spec, out_spec, err_spec) as sb:
        defer = getattr(sb._child, "defer_release", None)
        if defer is not None:  # what the backend does after the end waits for the result (see close)
            defer()
        if started is not None:
            started(sb)
        sinks = []
        for name, f, target in (("stdout", sb.stdout, stdout), ("stderr", sb.stderr, stderr)):
            if f is None:
                continue
            sink = _Sink(name, f, policy.limits.max_output, to=target.fd if isinstance(target, Relay) else -1)
            if name == "stdout" and reply_limit is not None:
                sink.limit, sink.kill_past = reply_limit + 1, True
            sinks.append(sink)
        timed_out = sb._pump(feed, sinks, None if timeout is None else start + timeout, signals_fd)
        out, err = _captured(sinks, sb.stdout, sb.stderr)
        cut = [s for s in sinks if s.dropped and not s.kill_past]
        if truncated_streams is not None:
            truncated_streams += [(s.name, s.kept, s.dropped) for s in cut]
        return _result(sb, out, err, timed_out, bool(cut), start, policy)


def _effective_timeout(timeout: float | None, policy: IsolationPolicy) -> float | None:
    """The stricter of the call's timeout and the policy's wall_timeout."""
    limits = [t for t in (timeout, policy.limits.wall_timeout) if t is not None]
    return min(limits) if limits else None


def _ending(
    sig: int | None, timed_out: bool, truncated: bool, limits: Limits, usage: Usage | None
) -> tuple[Outcome, tuple[str, ...]]:
    """Why the run ended, and which limits it ran into.

    Only what the kernel or the runner says for certain: SIGXCPU is the
    RLIMIT_CPU soft limit, SIGXFSZ the RLIMIT_FSIZE limit, SIGKILL after a
    CPU limit counts as `cpu` only when the measured CPU time reached it.
    """
    hits = ["max_output"] if truncated else []
    outcome: Outcome
    if timed_out:
        outcome = "timeout"
        hits.insert(0, "wall_timeout")
    elif limits.cpu_seconds is not None and (
        sig == signal.SIGXCPU or (sig == signal.SIGKILL and usage is not None and usage.cpu_time >= limits.cpu_seconds)
    ):
        outcome = "cpu"
        hits.insert(0, "cpu_seconds")
    elif limits.max_file_size is not None and sig == signal.SIGXFSZ:
        outcome = "file_size"
        hits.insert(0, "max_file_size")
    else:
        outcome = "exited" if sig is None else "signaled"
    return outcome, tuple(hits)


def _result(
    sb: Sandbox,
    out: bytes,
    err: bytes,
    timed_out: bool,
    truncated: bool,
    start: float,
    policy: IsolationPolicy,
) -> RunResult:
    rc = sb.wait()
    usage = sb.usage()
    sig = sb.term_signal
    outcome, hits = _ending(sig, timed_out, truncated, policy.limits, usage)
    hits += tuple(h for h in sb.backend_limits_hit() if h not in hits)
    requested = policy.limits.requested()
    runner_claims = tuple(f"limit:{n}={requested[n]}:runner" for n in sorted(RUNNER_LIMITS) if n in requested)
    return RunResult(
        argv=sb.argv,
        returncode=rc,
        stdout=out,
        stderr=err,
        backend=sb.backend,
        duration=time.monotonic() - start,
        enforced=(*sb.enforced, *runner_claims),
        outcome=outcome,
        missing=sb.missing,
        output_truncated=truncated,
        term_signal=sig,
        limits_hit=hits,
        cpu_time=None if usage is None else usage.cpu_time,
        peak_rss=None if usage is None else usage.peak_rss,
    )


class _Started:
    """Hands the sandbox of a run in a worker thread to the event loop, for cancellation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sandbox: Sandbox | None = None
        self._cancelled = False

    def set(self, sb: Sandbox) -> None:
        with self._lock:
            self._sandbox = sb
            cancelled = self._cancelled
        if cancelled:
            sb.kill()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            sb = self._sandbox
        if sb is not None:
            sb.kill()


async def run_async(
    cmd: Sequence[str],
    policy: IsolationPolicy | None = None,
    *,
    backend: str | None = "auto",
    stdin: bytes | str | StdinArg | Relay = None,
    timeout: float | None = None,
    cwd: str | None = None,
    enforcement: Enforcement = "strict",
    unsafe_no_isolation: bool = False,
    require_isolation: bool | None = None,
) -> RunResult:
    """`run` for asyncio. Cancelling the task kills the sandbox and reaps it before
    the CancelledError propagates.

    Each call runs in a thread of its own (not the loop's default executor, whose
    few workers would queue concurrent runs behind one another).
    """
    import asyncio  # here, not at module level: it costs ~40 ms of every `import isolation`

    opts = _Options(backend, cwd, enforcement, unsafe_no_isolation, require_isolation)
    argv, pol = tuple(cmd), policy or IsolationPolicy()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[RunResult] = loop.create_future()
    started = _Started()

    def deliver(result: RunResult | BaseException) -> None:
        if done.cancelled():
            return
        if isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)

    def work() -> None:
        result: RunResult | BaseException
        try:
            result = _run(argv, pol, opts, stdin, timeout, PIPE, PIPE, started.set)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(deliver, result)

    worker = threading.Thread(target=work, name="isolation-run", daemon=True)
    worker.start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        done.cancel()  # nobody will collect the worker's result
        started.cancel()
        # The worker kills (if it had not spawned yet), reaps and closes everything; wait for it.
        await asyncio.to_thread(worker.join)
        raise
