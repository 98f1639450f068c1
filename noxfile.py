"""Sessions: `nox -s tests` (README's test command), `nox -s lint`, `nox -s bench`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, security tests included, against the real kernel (with the
    optional Dask extra, so the tests of stages on Dask workers run too)."""
    session.install("-e", ".[test,dask]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".", "ruff>=0.5", "mypy>=1.10", "types-setuptools")
    session.run("ruff", "check", "isolation", "tests", "benchmarks", "native", "noxfile.py", "setup.py")
    session.run("mypy", "isolation")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, measured side by side in one run; see benchmarks/RESULTS.md."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)
