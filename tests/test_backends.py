"""Unit tests: backend resolution and the rules for warning about running unisolated."""

from __future__ import annotations

import warnings

import pytest

import isolation
from isolation.backends import resolve_backend
from isolation.errors import IsolationDisabledWarning, IsolationUnavailable, PolicyError


def test_auto_never_resolves_to_none() -> None:
    res = resolve_backend("auto", environ={})
    assert res.backend.name in ("native", "bwrap")


def test_auto_with_nothing_available_raises_with_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    from isolation import backends
    from isolation.backends import bwrap

    # bubblewrap not installed: the message says how to install it, and how to opt out.
    monkeypatch.setattr(backends, "AUTO_ORDER", ("bwrap",))
    monkeypatch.setattr(bwrap, "find_bwrap", lambda: None)
    with pytest.raises(IsolationUnavailable, match="apt-get install bubblewrap.*--unsafe-no-isolation"):
        resolve_backend("auto", environ={})


def test_explicit_none_warns_unless_opted_out() -> None:
    assert resolve_backend("none", environ={}).warn_unisolated is True
    assert resolve_backend("none", unsafe_no_isolation=True, environ={}).warn_unisolated is False
    assert resolve_backend("auto", environ={"NOETHER_ISOLATION": "none"}).warn_unisolated is False
    assert resolve_backend("auto", unsafe_no_isolation=True, environ={}).backend.name == "none"


def test_require_isolation_turns_none_into_an_error() -> None:
    with pytest.raises(IsolationUnavailable, match="required"):
        resolve_backend("none", require_isolation=True, environ={})
    with pytest.raises(IsolationUnavailable):
        resolve_backend("auto", environ={"NOETHER_ISOLATION": "none", "NOETHER_REQUIRE_ISOLATION": "1"})
    assert resolve_backend("bwrap", environ={"NOETHER_REQUIRE_ISOLATION": "1"}).backend.name == "bwrap"


def test_environment_picks_a_backend_and_bad_names_are_errors() -> None:
    assert resolve_backend("auto", environ={"NOETHER_ISOLATION": "bwrap"}).backend.name == "bwrap"
    with pytest.raises(PolicyError):
        resolve_backend("auto", environ={"NOETHER_ISOLATION": "docker"})
    with pytest.raises(PolicyError):
        resolve_backend("chroot", environ={})


def test_run_with_none_emits_the_warning_and_enforces_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOETHER_ISOLATION", raising=False)
    with pytest.warns(IsolationDisabledWarning, match="WITHOUT isolation"):
        res = isolation.run(["true"], backend="none")
    assert res.backend == "none" and res.returncode == 0
    assert not any(e.startswith(("namespace", "seccomp", "landlock")) for e in res.enforced)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IsolationDisabledWarning)
        isolation.run(["true"], backend="none", unsafe_no_isolation=True)
        monkeypatch.setenv("NOETHER_ISOLATION", "none")
        isolation.run(["true"])


def test_auto_follows_a_changed_environment_between_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto's choice is remembered per call and environment, not once for all: a host
    that stops offering what native needs (pretended here) gets bwrap on the next run."""
    from isolation.backends import ENV_PRETEND_MISSING

    monkeypatch.delenv("NOETHER_ISOLATION", raising=False)
    assert isolation.run(["true"]).backend == "native"
    monkeypatch.setenv(ENV_PRETEND_MISSING, "userns")
    assert isolation.run(["true"]).backend == "bwrap"
    monkeypatch.delenv(ENV_PRETEND_MISSING)
    assert isolation.run(["true"]).backend == "native"
