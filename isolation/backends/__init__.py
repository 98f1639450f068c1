"""Backend registry and selection: `auto` picks the strongest available, never `none`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import attrs

from isolation.backends.base import Availability, Backend, Child, Enforcement, Launched, Stdio
from isolation.backends.bwrap import BwrapBackend
from isolation.backends.none import NoneBackend
from isolation.errors import IsolationDisabledWarning, IsolationUnavailable, PolicyError

__all__ = [
    "Availability",
    "Backend",
    "BACKEND_NAMES",
    "Child",
    "Enforcement",
    "Launched",
    "Resolution",
    "Stdio",
    "get_backend",
    "resolve_backend",
]

BACKEND_NAMES: tuple[str, ...] = ("auto", "native", "bwrap", "none")
# Strongest first. `none` is never chosen by `auto`.
AUTO_ORDER: tuple[str, ...] = ("native", "bwrap")
ENV_BACKEND = "NOETHER_ISOLATION"
ENV_REQUIRE = "NOETHER_REQUIRE_ISOLATION"
# The environment `resolve_backend`'s choice depends on.
RESOLUTION_ENV: tuple[str, ...] = (ENV_BACKEND, ENV_REQUIRE)


def get_backend(name: str) -> Backend:
    if name == "bwrap":
        return BwrapBackend()
    if name == "none":
        return NoneBackend()
    if name == "native":
        try:
            from isolation.backends.native import NativeBackend
        except ImportError as exc:
            raise IsolationUnavailable(
                f"the native backend is not built ({exc}); "
                "reinstall with `pip install .` (needs gcc and the Python headers)"
            ) from None
        return NativeBackend()
    raise PolicyError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


@attrs.frozen
class Resolution:
    backend: Backend
    reason: str
    warn_unisolated: bool = False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def resolve_backend(
    requested: str | None = "auto",
    *,
    unsafe_no_isolation: bool = False,
    require_isolation: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> Resolution:
    """Choose the backend. Rules, in order:

    - `unsafe_no_isolation` (or ``NOETHER_ISOLATION=none``) is an explicit opt-out:
      `none`, without warning.
    - An explicit `requested` backend is used as is (it fails later if unavailable);
      an explicit ``none`` without the opt-out runs with an IsolationDisabledWarning.
    - ``auto`` (also from ``NOETHER_ISOLATION=auto``) picks native, then bwrap, and
      raises IsolationUnavailable when neither works: never `none`.
    - `require_isolation` (or ``NOETHER_REQUIRE_ISOLATION=1``) turns any `none` into an error.
    """
    env = os.environ if environ is None else environ
    if require_isolation is None:
        require_isolation = _truthy(env.get(ENV_REQUIRE))
    requested = requested or "auto"
    if requested not in BACKEND_NAMES:
        raise PolicyError(f"unknown backend {requested!r}; choose one of {', '.join(BACKEND_NAMES)}")
    env_choice = (env.get(ENV_BACKEND) or "").strip().lower()
    if env_choice and env_choice not in BACKEND_NAMES:
        raise PolicyError(f"{ENV_BACKEND}={env_choice!r} is not a backend; choose one of {', '.join(BACKEND_NAMES)}")

    opted_out = unsafe_no_isolation or (env_choice == "none" and requested in ("auto", "none"))
    if opted_out or requested == "none":
        if require_isolation:
            raise IsolationUnavailable(
                f"isolation is required ({ENV_REQUIRE} or --require-isolation) but the backend resolved to none"
            )
        why = "explicit opt-out" if opted_out else "backend='none' requested"
        return Resolution(NoneBackend(), why, warn_unisolated=not opted_out)

    if requested == "auto" and env_choice in ("native", "bwrap"):
        requested = env_choice
    if requested != "auto":
        return Resolution(get_backend(requested), f"requested {requested}")

    reasons: list[str] = []
    for name in AUTO_ORDER:
        try:
            backend = get_backend(name)
        except IsolationUnavailable as exc:
            reasons.append(f"{name}: {exc}")
            continue
        avail = backend.availability()  # a minimal real sandbox, once per process (see canary)
        if avail.ok:
            return Resolution(backend, f"auto: {name} is the strongest available backend ({avail.reason})")
        reasons.append(f"{name}: {avail.reason}")
    # Each reason names its cause and fix; bubblewrap is advised only where it is missing.
    raise IsolationUnavailable(
        "no isolation backend can build a sandbox on this host (" + "; ".join(_same_cause(reasons)) + "). "
        "To run without isolation anyway, opt out explicitly: "
        f"{ENV_BACKEND}=none, unsafe_no_isolation=True or --unsafe-no-isolation."
    )


def _same_cause(reasons: list[str]) -> list[str]:
    """`reasons`, with a cause already given for an earlier backend said once."""
    out: list[str] = []
    for reason in reasons:
        for earlier in out:
            n = len(os.path.commonprefix([reason[::-1], earlier[::-1]]))
            while n >= 60 and not reason[:-n].endswith((": ", ". ")):  # back to where a sentence starts
                n -= 1
            if n >= 60:  # the same cause and fix, word for word
                reason = f"{reason[:-n].rstrip(':. ')}: the same cause as above"
                break
        out.append(reason)
    return out


def warn_unisolated(argv0: str) -> None:
    warnings.warn(
        f"running {argv0!r} WITHOUT isolation (backend none); opt out explicitly with "
        f"{ENV_BACKEND}=none or --unsafe-no-isolation to silence this",
        IsolationDisabledWarning,
        stacklevel=4,
    )
