"""Seccomp filter selection and compilation (implemented in the syscall-filter work).

Interface used by the plan and both backends:
- `compile_filter(policy) -> SeccompFilter | None`: None only when the policy
  chose no filter; cached per policy choice.
- `SeccompFilter.bpf`: the raw `struct sock_filter` array, loaded by the native
  backend with seccomp(2) and passed to bubblewrap with `--seccomp FD`.
"""

from __future__ import annotations

import hashlib

import attrs

from isolation.policy import IsolationPolicy


@attrs.frozen
class SeccompFilter:
    profile: str
    bpf: bytes
    denied: tuple[str, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.bpf).hexdigest()

    def describe(self) -> dict[str, object]:
        return {"profile": self.profile, "sha256": self.digest, "denied": list(self.denied)}


def compile_filter(policy: IsolationPolicy) -> SeccompFilter | None:
    return None
