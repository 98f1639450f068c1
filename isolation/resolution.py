"""What a call resolves before anything is spawned, remembered per call.

Resolving a call (the backend `auto` picks, the plan, the program found on
the caller's PATH, the backend's own description of the sandbox) costs more
than starting a prepared sandbox, and none of it changes from one call to the
next unless the host does. So it is kept, per (command, policy, options, the
environment variables it read), in one place with one validity check, run
before every use: `Resolution.still_valid`.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from isolation.backends.base import Backend, Launched, Stdio
from isolation.paths import is_executable_file
from isolation.plan import Identities, SandboxPlan, program_still_found

Launch = Callable[[Stdio], Launched]


@attrs.frozen
class Resolution:
    """The backend, the plan, the limits that backend cannot enforce, and `launch`:
    the backend's sandbox for this plan, ready to start with a run's stdio."""

    backend: Backend
    plan: SandboxPlan
    warn_unisolated: bool
    unenforceable: tuple[str, ...]
    launch: Launch
    sources: Identities | None

    def still_valid(self) -> bool:
        """Whether the host still matches what was resolved: every bind source is the
        same file (a replaced one, e.g. an /etc file rewritten by rename, must not be
        used through a sandbox built for the old one), the policy's sources are still
        allowed (PolicyError if not, as on a first run: missing, or a kernel file
        system mounted there meanwhile), and the program found is still the one."""
        self.plan.policy.check_host_paths()
        if self.plan.source_identities() != self.sources:
            return False
        exe = self.plan.executable
        return (exe is None or is_executable_file(exe[1])) and program_still_found(self.plan)


_remembered: dict[tuple[object, ...], Resolution] = {}
_MAX = 64


def remembered(key: tuple[object, ...], make: Callable[[], Resolution]) -> Resolution:
    """The resolution of the call `key` names, made again when the host changed."""
    found = _remembered.get(key)
    if found is None or not found.still_valid():
        found = make()
        if len(_remembered) >= _MAX:
            _remembered.clear()
        _remembered[key] = found
    return found


def forget() -> None:
    """Resolve every call again (the host's features were found to differ)."""
    _remembered.clear()
