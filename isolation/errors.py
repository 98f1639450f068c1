"""Typed errors: every way `isolation` refuses to run is one of these."""

from __future__ import annotations


class IsolationError(Exception):
    """Base class. The CLI maps every IsolationError to exit status 125."""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled by state, without calling __init__ again (subclasses take keyword-only
        # arguments): a stage's error comes back from another process, e.g. a Dask worker.
        return (_restore, (type(self), self.args), self.__dict__)


def _restore(cls: type[IsolationError], args: tuple[object, ...]) -> IsolationError:
    error = cls.__new__(cls)
    error.args = args
    return error


class PolicyError(IsolationError):
    """The policy (or its JSON, or a path in it) is invalid; nothing was run."""


class IsolationUnavailable(IsolationError):
    """The requested isolation cannot be enforced on this host; nothing was run."""


class SandboxSetupError(IsolationError):
    """A step of sandbox construction failed; the command was not executed.

    `step` names the operation (for example ``mount`` or ``pivot_root``), `path`
    the file it concerned (may be empty) and `errno` the kernel's error number.
    """

    def __init__(self, message: str, *, step: str = "", path: str = "", errno: int = 0) -> None:
        hint = setup_hint(step, errno) if step else ""
        if hint and hint not in message:
            message = f"{message}. {hint[:1].upper()}{hint[1:]}"
        super().__init__(message)
        self.step = step
        self.path = path
        self.errno = errno

    @classmethod
    def from_oserror(cls, exc: OSError, what: str, *, step: str, path: str = "") -> SandboxSetupError:
        """`what` failed with `exc`: the message ends with the kernel's reason, and
        `errno` is the kernel's number (0 when the OSError carries none)."""
        return cls(f"{what}: {exc.strerror}", step=step, path=path, errno=exc.errno or 0)


class IsolationDisabledWarning(UserWarning):
    """A command runs on the host without isolation and nobody opted out explicitly."""


class CommandNotFound(PolicyError):
    """The command does not exist inside the sandbox (CLI exit status 127)."""


class CommandNotVisible(CommandNotFound):
    """The caller's command exists on the host but the sandbox cannot see it; the message
    names the change that makes it run (CLI exit status 125: the policy needs changing)."""


class CommandNotExecutable(PolicyError):
    """The command exists inside the sandbox but cannot be executed (CLI exit status 126)."""


class BwrapFromPathWarning(UserWarning):
    """bubblewrap was found only through $PATH, not in a trusted system location."""


class StageError(IsolationError):
    """A pipeline stage ran but gave no value. `stage` names it; `result` is its run, if any."""

    def __init__(self, message: str, *, stage: str, result: object = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.result = result


class StageRaised(StageError):
    """The stage's Python callable raised inside the sandbox.

    `error_type`, `error_message` and `traceback` are text reported by the
    sandbox: shown to people, never evaluated.
    """

    def __init__(
        self, message: str, *, stage: str, error_type: str, error_message: str, traceback: str, result: object = None
    ) -> None:
        super().__init__(message, stage=stage, result=result)
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class StageFailed(StageError):
    """The stage ended without a value: a command exited non-zero, the sandbox was
    killed or timed out, or a Python stage's reply was missing or not valid JSON."""


def setup_hint(step: str, err: int) -> str:
    """The likely cause of a failed setup step on this host, and its fix ("" if none is known).

    Read from the host when the error is raised (see `isolation.userns`), so the
    message names what is refused here, not a list of possibilities.
    """
    from isolation import userns  # here: userns reads the host, errors is imported by everything

    return userns.setup_hint(step, err)
