"""Running a command in a sandbox: the entry points `run`, `spawn` and `run_async`.

They resolve a call (`isolation.resolution`: the backend, the plan, the backend's
sandbox for it, remembered per call), set up the sandbox's stdio and
egress proxy, and launch it; the handle they return or drive is `isolation.sandbox.Sandbox`,
its I/O loop `isolation.pump`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
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
    Stdio,
    resolve_backend,
    warn_unisolated,
)
from isolation.backends.none import NoneBackend
from isolation.egress import EgressSession, egress_plan
from isolation.errors import IsolationUnavailable, PolicyError, SandboxSetupError
from isolation.limits import Limits
from isolation.plan import SandboxPlan, build_plan
from isolation.policy import IsolationPolicy
from isolation.pump import Relay, Sink, captured, pump
from isolation.resolution import Resolution, remembered
from isolation.result import Outcome, RunResult, Usage
from isolation.sandbox import Sandbox

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
# Limits the runner itself enforces for run()/run_async(), whatever the backend.
RUNNER_LIMITS = frozenset({"wall_timeout", "max_output"})



StdinArg = None | int | IO[Any]
OutArg = None | int | IO[Any]


def _fd_of(spec: int | IO[Any]) -> int:
    return spec if isinstance(spec, int) else spec.fileno()


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


def _resolve(argv: tuple[str, ...], policy: IsolationPolicy, opts: _Options) -> Resolution:
    env = os.environ
    try:
        key = (argv, policy, opts, env.get("PATH"), *map(env.get, RESOLUTION_ENV), *map(env.get, policy.env_allowlist))
        hash(key)
    except (TypeError, AttributeError):  # not a valid call: _make_resolution says why
        return _make_resolution(argv, policy, opts)
    return remembered(key, functools.partial(_make_resolution, argv, policy, opts))


def _make_resolution(argv: tuple[str, ...], policy: IsolationPolicy, opts: _Options) -> Resolution:
    if isinstance(argv, str | bytes) or not argv:
        raise PolicyError("cmd must be a non-empty sequence of arguments, e.g. ['sh', '-c', 'echo hi']")
    if opts.enforcement not in ("strict", "best_effort"):
        raise PolicyError(f"enforcement must be 'strict' or 'best_effort', not {opts.enforcement!r}")
    chosen = resolve_backend(
        opts.backend, unsafe_no_isolation=opts.unsafe_no_isolation, require_isolation=opts.require_isolation
    )
    backend = chosen.backend
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
    sources = plan.source_identities()  # before the backend's description: a later change is seen
    launch = backend.launcher(plan, opts.enforcement)
    return Resolution(backend, plan, chosen.warn_unisolated, unenforceable, launch, sources)


def _spawn(
    argv: tuple[str, ...], policy: IsolationPolicy, opts: _Options, stdin: StdinArg, stdout: OutArg, stderr: OutArg
) -> Sandbox:
    resolution = _resolve(argv, policy, opts)
    backend, plan, unenforceable = resolution.backend, resolution.plan, resolution.unenforceable
    if resolution.warn_unisolated:
        warn_unisolated(argv[0])

    parent_ends: dict[str, IO[bytes]] = {}
    discard: list[IO[bytes]] = []
    session: EgressSession | None = None
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
        launch = resolution.launch
        if plan.policy.egress_allow:  # the allowlist's proxy, and the plan that reaches it (docs/network.md)
            session = _egress_session(backend, plan, opts.enforcement)
            if session is not None:  # a plan of this run only (its proxy's hand-over)
                launch = functools.partial(backend.launch, egress_plan(plan, session), enforcement=opts.enforcement)
        launched = launch(Stdio(*child_fds))
        if session is not None:
            if "namespace:net" not in launched.enforced:  # the proxy would be one way out among many
                launched.child.kill()
                launched.child.wait()
                launched.child.release()
                raise IsolationUnavailable(
                    f"backend {backend.name} ran without a network namespace of its own here, so an egress "
                    "allowlist cannot be enforced; use a host with user namespaces"
                )
            launched = attrs.evolve(launched, enforced=(*launched.enforced, session.claim()))
        elif plan.policy.egress_allow:
            launched = attrs.evolve(launched, missing=(*launched.missing, "network:allowlist"))
    except BaseException as exc:
        if session is not None:
            session.close()
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
        sb = Sandbox(argv, backend.name, launched, parent_ends, discard)
        sb.egress = session
        return sb
    except BaseException as exc:
        launched.child.kill()
        launched.child.wait()
        launched.child.release()
        if session is not None:
            session.close()
        for f in (*parent_ends.values(), *discard):
            f.close()
        if isinstance(exc, OSError):
            raise _setup_error(exc) from exc
        raise


def _egress_session(backend: Backend, plan: SandboxPlan, enforcement: Enforcement) -> EgressSession | None:
    """The proxy for a run with an allowlist; None where the backend cannot keep it (backend
    none: the command shares the host's network; strict refuses that)."""
    if isinstance(backend, NoneBackend):
        if enforcement == "strict":
            raise IsolationUnavailable(
                "backend none runs on the host's network and cannot enforce an egress allowlist; use native or "
                "bwrap, or pass enforcement='best_effort' (CLI --best-effort) to run without it"
            )
        return None
    return EgressSession(plan.policy.egress_allow, plan.policy.allow_local_addresses)


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
        if started is not None:
            started(sb)
        sinks = []
        for name, f, target in (("stdout", sb.stdout, stdout), ("stderr", sb.stderr, stderr)):
            if f is None:
                continue
            sink = Sink(name, f, policy.limits.max_output, to=target.fd if isinstance(target, Relay) else -1)
            if name == "stdout" and reply_limit is not None:
                sink.limit, sink.kill_past = reply_limit + 1, True
            sinks.append(sink)
        timed_out = pump(sb, feed, sinks, None if timeout is None else start + timeout, signals_fd)
        out, err = captured(sinks, sb.stdout, sb.stderr)
        if sb.egress is not None and not sb.egress.handed_over and not timed_out:
            # The helper ended before the hand-over: the command was never executed.
            detail = err.decode(errors="replace").strip()[-500:] or f"exit status {sb.wait()}"
            raise SandboxSetupError(f"egress setup failed inside the sandbox: {detail}", step="egress")
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
    if sb.egress is not None:  # the proxy's log is complete once its relays have ended
        sb._network_log = sb.egress.close()
        sb.egress = None
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
        network_log=sb.network_log,
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
