"""Shared test matrix: every sandbox test runs against each real backend.

`ISOLATION_TEST_BACKENDS` (comma-separated, default "bwrap,native") narrows
the matrix for local work; CI runs the default, so no backend is skipped there.
"""

from __future__ import annotations

import os

import pytest

ALL_BACKENDS = ("bwrap", "native")
BACKENDS = tuple(b for b in os.environ.get("ISOLATION_TEST_BACKENDS", ",".join(ALL_BACKENDS)).split(",") if b)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a real sandboxing backend."""
    return str(request.param)
