"""What this host's kernel offers the native backend, and what a test may take away.

Probed once per process (kernel facts do not change while it lives); a
test walks the degradation ladder with `simulate_host`, a call in the
process itself, never an environment variable or a file, so nothing a
production environment sets can switch a layer off.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import attrs

from isolation import landlock
from isolation._native import lib
from isolation.userns import landlock_status, seccomp_status, userns_status

# The namespaces a sandbox gets, in the order they are claimed, with their iso_config flag.
NAMESPACES = (
    ("user", lib.ISO_F_USERNS),
    ("mount", lib.ISO_F_MOUNTNS),
    ("pid", lib.ISO_F_PIDNS),
    ("net", lib.ISO_F_NETNS),
    ("ipc", lib.ISO_F_IPCNS),
    ("uts", lib.ISO_F_UTSNS),
    ("cgroup", lib.ISO_F_CGROUPNS),
)


@attrs.frozen
class SimulatedHost:
    """What a test makes this process believe the host lacks (see `simulate_host`).

    It only ever takes layers away, and `RunResult.missing` says so: a run on a
    simulated host is what the same run on a real host lacking them would be.
    `landlock_unlisted` leaves the Landlock rules of those sandbox paths out
    (mounted but not allowed), to show that Landlock, not the mount table, denies them.
    """

    userns: bool = True
    landlock: bool = True
    landlock_abi: int | None = None  # cap on the kernel's ABI
    seccomp: bool = True
    landlock_unlisted: frozenset[str] = frozenset()


_simulated: SimulatedHost | None = None
# Called on the way in and out of `simulate_host`: what was concluded from the host's features.
_on_change: list[Callable[[], None]] = []


def simulated() -> SimulatedHost | None:
    return _simulated


def on_change(forget: Callable[[], None]) -> None:
    """Have `forget` called whenever the simulated host changes (caches of host-derived choices)."""
    _on_change.append(forget)


@contextlib.contextmanager
def simulate_host(host: SimulatedHost) -> Iterator[None]:
    """Within the block, this process's runs see `host` (tests only).

    The one way to walk the degradation ladder on a kernel that has every layer.
    Choices made from the host's features (`auto`'s backend, resolved runs) are
    forgotten on the way in and out. Not thread-safe: for tests.
    """
    global _simulated
    before = _simulated
    _simulated = host
    _changed()
    try:
        yield
    finally:
        _simulated = before
        _changed()


def _changed() -> None:
    for forget in _on_change:
        forget()


@attrs.frozen
class HostFeatures:
    userns: bool
    userns_why: str
    landlock_abi: int
    seccomp: bool
    landlock_why: str = ""  # the cause and fix when Landlock is unusable
    seccomp_why: str = ""  # the same for seccomp

    def why(self, features: list[str]) -> str:
        """The causes (and fixes) of the host's gaps among `features` (names as in `missing`)."""
        reasons = [self.userns_why] if not self.userns and any(f.startswith("namespace:") for f in features) else []
        if any(f.startswith("landlock:") for f in features) and self.landlock_why:
            reasons.append(self.landlock_why)
        if "seccomp" in features and self.seccomp_why:
            reasons.append(self.seccomp_why)
        return "; ".join(reasons)

    def missing(self, *, network: bool) -> tuple[list[str], list[str]]:
        """The layers this host lacks for a sandbox (with or without `Network`), and
        which of them a strict run requires."""
        missing: list[str] = []
        required: list[str] = []
        if not self.userns:
            ns = [f"namespace:{n}" for n, _ in NAMESPACES if n != "net" or not network]
            missing += [*ns, "rootfs:minimal", "ids:65534"]
            required += missing
        ll_missing, ll_required = landlock.missing_features(self.landlock_abi, network=network)
        missing += ll_missing
        required += ll_required
        if not self.seccomp:
            missing.append("seccomp")
            required.append("seccomp")
        return missing, required


def host_features() -> HostFeatures:
    sim = _simulated or SimulatedHost()
    ok, why = userns_status()
    if not sim.userns:
        ok, why = False, SIMULATED
    kernel_abi, landlock_why = _landlock_status()
    abi = kernel_abi if sim.landlock else 0
    if sim.landlock_abi is not None:
        abi = min(abi, sim.landlock_abi)
    abi = min(abi, landlock.NEWEST_ABI)
    seccomp_ok, seccomp_why = _seccomp_status()
    if abi == 0 < kernel_abi:
        landlock_why = SIMULATED
    if seccomp_ok and not sim.seccomp:
        seccomp_why = SIMULATED
    return HostFeatures(ok, why, abi, seccomp_ok and sim.seccomp, landlock_why, seccomp_why)


SIMULATED = "simulated by a test (isolation.backends.native.simulate_host)"
# Kernel facts that do not change while the process lives.
_landlock_status = functools.cache(landlock_status)
_seccomp_status = functools.cache(seccomp_status)


@functools.cache
def cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63
