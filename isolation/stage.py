"""Pipeline stages: Python callables and commands that declare their effects, each run in its own sandbox.

::

    @isolation.stage(effects=[FsRead("/data")])
    def count_words(path: str) -> int:
        return len(open(path).read().split())

    wc = isolation.command_stage("wc", ["wc", "-l"], effects=[FsRead("/data")])
    results = isolation.StageExecutor(max_workers=4).run([count_words("/data/a"), wc("/data/b")])
    results[0].unwrap()   # the return value, or StageRaised carrying the sandbox's traceback

Calling a stage runs nothing: it binds the arguments into a `Task`. The
executor derives each task's sandbox with `IsolationPolicy.from_effects`,
checks every task (backend, paths, command, limits, arguments) before it
starts any, so a pipeline with one unenforceable stage runs nothing, then runs
them on a thread pool, one sandbox each, or on any `concurrent.futures.Executor`
you pass (``StageExecutor(executor=client.get_executor(pure=False))`` runs
them on Dask workers, each building its sandbox and enforcing the policy on its
own host; see docs/guide.md, "Scaling out").

Arguments and return values cross the boundary as JSON, never pickle: the
parent decodes what the sandbox sends, and ``pickle.loads`` of hostile bytes
runs arbitrary code in the parent (``__reduce__``), which would undo the
sandbox. ``json.loads`` yields only dicts, lists, strings, numbers, booleans
and None. So stage arguments and results must be JSON data (tuples arrive as
lists); nothing is shared in memory.

A reply is bounded before it is decoded, so a hostile stage can only fail
itself: at most `max_reply` bytes are read (default 4 MiB; past it the stage is
killed), and it may nest at most `max_reply_depth` arrays and objects (default
100), checked without recursion. Either way the task's result is a StageFailed
and the other tasks' results are untouched. Decoding a reply costs the caller up
to about 30 times its size (a reply of empty lists, the worst case).

A Python stage runs ``python -I`` with the running interpreter
(`IsolationPolicy.with_python`), the isolation package and the stage's own
code bound read-only: its module's file, or its top-level package, never the
directory around it (which may be a home directory). Anything else it imports
from outside the interpreter's prefix needs an `FsRead` effect.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import attrs

from isolation.backends import Backend, Enforcement, resolve_backend
from isolation.effects import EffectSet
from isolation.errors import IsolationError, IsolationUnavailable, PolicyError, StageError, StageFailed, StageRaised
from isolation.limits import Limits
from isolation.plan import build_plan
from isolation.policy import IsolationPolicy
from isolation.result import RunResult
from isolation.runner import PIPE, RUNNER_LIMITS, _Options, _run

# Bounds of a Python stage's reply (StageExecutor's max_reply and max_reply_depth).
DEFAULT_MAX_REPLY = 4 << 20
DEFAULT_MAX_REPLY_DEPTH = 100

# ``python -I -c BOOT PATH...``: put the code's import roots first, then hand over to the worker.
BOOT = "import sys; sys.path[:0] = sys.argv[1:]; from isolation._stage_worker import main; main()"

F = TypeVar("F", bound=Callable[..., Any])


def _import_location(module: str, file: str) -> tuple[str, str]:
    """(path to bind read-only, sys.path entry) for `module` defined in `file`: only the
    module's file or its top-level package is bound, not the directory around it (which
    may be a home directory)."""
    path = os.path.realpath(file)
    levels = len(module.split(".")) - (0 if os.path.basename(path).startswith("__init__.") else 1)
    top = path
    if levels:
        top = os.path.dirname(path)
        for _ in range(levels - 1):
            top = os.path.dirname(top)
    return top, os.path.dirname(top)


def _code_location(func: Callable[..., Any]) -> tuple[str, str | None, tuple[str, str]]:
    """(module name, script file or None, (bind, import root)) of a module-level function."""
    qualname = getattr(func, "__qualname__", "")
    if not callable(func) or not qualname or "<" in qualname:
        raise PolicyError(f"a stage must be a module-level function (importable by name), not {func!r}")
    module_name = func.__module__
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        raise PolicyError(f"stage {qualname}: module {module_name} has no file; define stages in a module or script")
    if module_name == "__main__":
        path = os.path.realpath(file)
        return module_name, path, (path, os.path.dirname(path))
    return module_name, None, _import_location(module_name, file)


# Where the isolation package itself is: the worker inside the sandbox imports it.
_OWN = _import_location("isolation", os.path.join(os.path.dirname(__file__), "__init__.py"))


@attrs.frozen
class PythonStage:
    """A Python callable declared as a stage. Calling it returns a `Task`; `func` is the plain function."""

    func: Callable[..., Any] = attrs.field(eq=False, repr=False)
    name: str
    effects: EffectSet
    module: str
    file: str | None
    qualname: str
    code: tuple[str, str]  # (bound read-only, import root)
    timeout: float | None = None
    limits: Limits = attrs.field(factory=Limits)
    env: tuple[str, ...] = ()
    is_isolation_stage: ClassVar[bool] = True

    def __call__(self, *args: Any, **kwargs: Any) -> Task:
        return Task(self, args, kwargs)

    def with_effects(self, *effects: object) -> PythonStage:
        """The same stage with more effects, e.g. an input path known only at run time."""
        return attrs.evolve(self, effects=self.effects.union(effects))

    def policy(self) -> IsolationPolicy:
        """`from_effects`, plus the running Python, this stage's code and the isolation package, read-only."""
        base = IsolationPolicy.from_effects(self.effects, env_allowlist=self.env).with_python()
        return base.with_read(self.code[0], _OWN[0]).evolve(limits=self.limits)

    def argv(self) -> tuple[str, ...]:
        return (sys.executable, "-I", "-c", BOOT, *dict.fromkeys((_OWN[1], self.code[1])))

    def request(self, args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
        doc = {"module": self.module, "file": self.file, "qualname": self.qualname, "args": args, "kwargs": kwargs}
        try:
            return json.dumps(doc, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"stage {self.name!r}: arguments must be JSON data: {exc}") from None


@attrs.frozen
class CommandStage:
    """A command declared as a stage. Calling it with extra arguments returns a `Task`."""

    name: str
    argv: tuple[str, ...]
    effects: EffectSet
    timeout: float | None = None
    limits: Limits = attrs.field(factory=Limits)
    env: tuple[str, ...] = ()

    def __call__(self, *args: str, stdin: bytes | None = None) -> Task:
        return Task(self, args, {}, stdin)

    def with_effects(self, *effects: object) -> CommandStage:
        """The same stage with more effects, e.g. an input path known only at run time."""
        return attrs.evolve(self, effects=self.effects.union(effects))

    def policy(self) -> IsolationPolicy:
        return IsolationPolicy.from_effects(self.effects, env_allowlist=self.env).evolve(limits=self.limits)


@attrs.frozen(eq=False)
class Task:
    """One invocation of a stage with its arguments; nothing has run yet."""

    stage: PythonStage | CommandStage
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    stdin: bytes | None = None


@attrs.frozen
class StageResult:
    """How one task ended. `value`: the Python stage's return value, or the command's RunResult."""

    name: str
    value: Any
    run: RunResult | None
    error: IsolationError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Any:
        """The value, or raise the stage's error (StageRaised, StageFailed, or why it could not start)."""
        if self.error is not None:
            raise self.error
        return self.value


def stage(
    *,
    effects: Iterable[object] = (),
    name: str | None = None,
    timeout: float | None = None,
    limits: Limits | None = None,
    env: Sequence[str] = (),
) -> Callable[[F], PythonStage]:
    """Declare a module-level function as a stage with its effects (`Network`, `FsRead(path)`, ...).

    `env` names caller variables to pass (beyond the default allowlist); `timeout`
    and `limits` bound each run.
    """
    effect_set = EffectSet.of(effects)

    def wrap(func: F) -> PythonStage:
        module, file, code = _code_location(func)
        return PythonStage(
            func, name or func.__qualname__, effect_set, module, file, func.__qualname__, code,
            timeout, limits or Limits(), tuple(env),
        )  # fmt: skip

    return wrap


def command_stage(
    name: str,
    argv: Sequence[str],
    *,
    effects: Iterable[object] = (),
    timeout: float | None = None,
    limits: Limits | None = None,
    env: Sequence[str] = (),
) -> CommandStage:
    """Declare a command as a stage. A non-zero exit makes its result a StageFailed."""
    if isinstance(argv, str) or not argv:
        raise PolicyError(f"command stage {name!r}: argv must be a non-empty list of arguments")
    return CommandStage(name, tuple(argv), EffectSet.of(effects), timeout, limits or Limits(), tuple(env))


@attrs.frozen
class _CheckedTask:
    """A task whose policy and command were checked before any of them ran."""

    task: Task
    policy: IsolationPolicy
    argv: tuple[str, ...]
    stdin: bytes | None


class StageExecutor:
    """Runs tasks, each in its own sandbox, on a thread pool or a given executor; results
    come back in task order.

    Every task is checked before any runs: an unavailable backend, a missing
    path, a command the sandbox cannot see, a limit the backend cannot enforce
    (under strict enforcement) or arguments that are not JSON raise
    IsolationError and nothing runs. A stage is never run without isolation.

    `executor`: any `concurrent.futures.Executor` to run the tasks on instead of a
    thread pool of `max_workers` (it is not shut down). Where the executor runs a
    task (another process or host) builds the sandbox, enforces the policy and
    bounds the reply; only the decoded result comes back (pickled by the executor).
    The checks run here, so the workers need the same paths as the caller (Python,
    the stage's code, its inputs) and the same backend.
    """

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        backend: str = "auto",
        enforcement: Enforcement = "strict",
        max_reply: int = DEFAULT_MAX_REPLY,
        max_reply_depth: int = DEFAULT_MAX_REPLY_DEPTH,
        executor: Executor | None = None,
    ) -> None:
        """`max_reply` bytes and `max_reply_depth` levels of nesting bound each Python stage's reply."""
        for name, value in (("max_reply", max_reply), ("max_reply_depth", max_reply_depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise PolicyError(f"StageExecutor {name} must be a positive integer, not {value!r}")
        if executor is not None and not isinstance(executor, Executor):
            raise PolicyError(f"StageExecutor executor must be a concurrent.futures.Executor, not {executor!r}")
        if executor is not None and max_workers is not None:
            raise PolicyError("StageExecutor takes max_workers or executor, not both (the executor sizes itself)")
        self.max_workers = max_workers
        self.executor = executor
        self.backend = backend
        self.enforcement: Enforcement = enforcement
        self.max_reply = max_reply
        self.max_reply_depth = max_reply_depth

    def _backend(self) -> Backend:
        backend = resolve_backend(self.backend).backend
        if backend.name == "none":
            raise IsolationUnavailable("the stage executor never runs a stage without isolation (backend none)")
        avail = backend.availability()
        if not avail.ok:
            raise IsolationUnavailable(f"backend {backend.name} is not available: {avail.reason}")
        return backend

    def check(self, tasks: Iterable[Task]) -> None:
        """Everything that can be decided before running; raises on the first task that cannot run."""
        self._check(tasks)

    def _check(self, tasks: Iterable[Task]) -> tuple[str, list[_CheckedTask]]:
        backend = self._backend()
        enforced: frozenset[str] = getattr(backend, "enforced_limits", frozenset())
        checked = []
        for task in tasks:
            st = task.stage
            data: bytes | None
            try:
                if isinstance(st, PythonStage):
                    policy, argv, data = st.policy(), st.argv(), st.request(task.args, task.kwargs)
                else:
                    policy, argv, data = st.policy(), (*st.argv, *map(str, task.args)), task.stdin
                build_plan(policy, argv)
                missing = sorted(set(policy.limits.requested()) - RUNNER_LIMITS - enforced)
                if missing and self.enforcement == "strict":
                    raise IsolationUnavailable(f"backend {backend.name} cannot enforce limits {', '.join(missing)}")
            except PolicyError as exc:
                raise type(exc)(f"stage {st.name!r}: {exc}") from None
            except IsolationUnavailable as exc:
                raise IsolationUnavailable(f"stage {st.name!r}: {exc}") from None
            checked.append(_CheckedTask(task, policy, argv, data))
        return backend.name, checked

    def run(self, tasks: Iterable[Task]) -> list[StageResult]:
        """Check every task, then run them all; a stage's failure is in its result, not raised."""
        backend, checked = self._check(tasks)
        if not checked:
            return []
        job = _Job(backend, self.enforcement, self.max_reply, self.max_reply_depth)
        if self.executor is not None:
            futures = [self.executor.submit(_run_one, p, job) for p in checked]
            return [_collect(p, future) for p, future in zip(checked, futures, strict=True)]
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="isolation-stage") as pool:
            return list(pool.map(functools.partial(_run_one, job=job), checked))

    def call(self, task: Task) -> Any:
        """Run one task and return its value (or raise its error)."""
        return self.run([task])[0].unwrap()


@attrs.frozen
class _Job:
    """What a worker needs besides the task: plain data, so it crosses to another process."""

    backend: str
    enforcement: Enforcement
    max_reply: int
    max_reply_depth: int


def _run_one(p: _CheckedTask, job: _Job) -> StageResult:
    """Run one checked task where it is called (a thread here, or an executor's worker)."""
    st = p.task.stage
    reply_limit = job.max_reply if isinstance(st, PythonStage) else None
    opts = _Options(job.backend, None, job.enforcement)
    try:
        res = _run(p.argv, p.policy, opts, p.stdin, st.timeout, PIPE, PIPE, reply_limit=reply_limit)
    except IsolationError as exc:
        return StageResult(st.name, None, None, exc)
    if res.timed_out:
        return StageResult(st.name, None, res, StageFailed(f"stage {st.name!r} timed out", stage=st.name, result=res))
    if isinstance(st, CommandStage):
        error = None if res.returncode == 0 else _failed(st.name, f"exited with status {res.returncode}", res)
        return StageResult(st.name, res, res, error)
    return _python_result(st.name, res, job.max_reply, job.max_reply_depth)


def _collect(p: _CheckedTask, future: Future[StageResult]) -> StageResult:
    """A task's result from the executor; what the executor itself raised (a lost worker,
    a task it could not send) is that stage's failure, as any other."""
    name = p.task.stage.name
    try:
        result = future.result()
    except Exception as exc:  # noqa: BLE001 - whatever the executor raised, the other tasks go on
        why = f"stage {name!r} did not come back from the executor: {type(exc).__name__}: {exc}"
        return StageResult(name, None, None, StageFailed(why, stage=name))
    if not isinstance(result, StageResult):
        why = f"stage {name!r}: the executor returned {type(result).__name__}, not a StageResult"
        return StageResult(name, None, None, StageFailed(why, stage=name))
    return result


def _failed(name: str, why: str, res: RunResult) -> StageFailed:
    tail = res.stderr[-2000:].decode("utf-8", "replace").strip()
    return StageFailed(f"stage {name!r} {why}" + (f"; stderr ends: {tail}" if tail else ""), stage=name, result=res)


def _python_result(name: str, res: RunResult, max_reply: int, max_depth: int) -> StageResult:
    """Decode the worker's reply: JSON only, bounded in size and depth, every field treated
    as untrusted text or data."""
    if len(res.stdout) > max_reply:  # the runner killed it past the bound
        why = f"sent a reply larger than {max_reply} bytes (StageExecutor max_reply); it was killed"
        return StageResult(name, None, res, _failed(name, why, res))
    depth = json_depth(res.stdout)
    if depth > max_depth:
        why = f"sent a reply nested {depth} levels deep, more than {max_depth} (StageExecutor max_reply_depth)"
        return StageResult(name, None, res, _failed(name, why, res))
    try:
        doc = json.loads(res.stdout)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool):
        return StageResult(name, None, res, _failed(name, f"gave no valid reply (exit status {res.returncode})", res))
    if doc["ok"]:
        return StageResult(name, doc.get("value"), res)
    error_type, message, tb = (str(doc.get(k, "")) for k in ("type", "message", "traceback"))
    short = error_type.removeprefix("builtins.")
    error = StageRaised(
        f"stage {name!r} raised {short}: {message}",
        stage=name, error_type=error_type, error_message=message, traceback=tb, result=res,
    )  # fmt: skip
    return StageResult(name, None, res, error)


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
# Opening brackets become 1, closing ones -1 (as signed bytes); everything else is deleted.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")


def json_depth(data: bytes) -> int:
    """How deeply `data` nests arrays and objects, found without recursion and in linear
    time (regular expressions without backtracking, then a running sum).

    Escapes go first, then strings, so no bracket inside a string counts. On input that
    is not JSON the count may be too high, never lower than the depth json.loads reaches
    before it fails: the two agree on every string up to that point.
    """
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", data)).translate(_BRACKETS, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(brackets).cast("b")), default=0)


__all__ = [
    "CommandStage",
    "PythonStage",
    "StageError",
    "StageExecutor",
    "StageFailed",
    "StageRaised",
    "StageResult",
    "Task",
    "command_stage",
    "stage",
]
