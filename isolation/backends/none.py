"""The `none` backend: runs on the host with a cleared environment and nothing else.

It exists for development and for hosts where the caller explicitly accepts
running untrusted code unconfined; `enforced` says only what it does.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Callable

from isolation.backends.base import Availability, Enforcement, Launched, Stdio
from isolation.backends.children import PopenChild
from isolation.errors import CommandNotExecutable, CommandNotFound
from isolation.plan import SandboxPlan


class NoneBackend:
    name = "none"

    def __init__(self, host_cwd: str | None = None) -> None:
        self.host_cwd = host_cwd

    def availability(self) -> Availability:
        return Availability(True, "runs on the host without isolation")

    def launcher(self, plan: SandboxPlan, enforcement: Enforcement) -> Callable[[Stdio], Launched]:
        """`launch` of `plan` (nothing of it is worked out ahead of a run here)."""
        return functools.partial(self.launch, plan, enforcement=enforcement)

    def launch(self, plan: SandboxPlan, stdio: Stdio, *, enforcement: Enforcement = "strict") -> Launched:
        env = plan.env_dict
        # The host's programs live where the caller's PATH says, not in the sandbox view.
        env["PATH"] = os.environ.get("PATH", env["PATH"])
        cwd = self.host_cwd or plan.policy.work_host or os.getcwd()
        env["HOME"] = cwd
        try:
            proc = subprocess.Popen(
                list(plan.argv),
                stdin=stdio.stdin,
                stdout=stdio.stdout,
                stderr=stdio.stderr,
                env=env,
                cwd=cwd,
                close_fds=True,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise CommandNotFound(f"command {plan.argv[0]!r} not found") from None
        except PermissionError:
            raise CommandNotExecutable(f"command {plan.argv[0]!r} is not executable") from None
        return Launched(PopenChild(proc, kill_group=True), ("env:cleared", "fds:closed"))
