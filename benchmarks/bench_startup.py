"""Per-run latency of a trivial sandboxed command: native vs bwrap vs plain subprocess.

Measured side by side, interleaved round by round so machine noise hits every
contender alike; reports medians and the ratios set as targets: prepared native
<= 1.9x `subprocess.run(..., capture_output=True)` (isolation.run captures too),
native >= 3x faster than bwrap, and the bwrap backend <= 1.4x the raw bwrap CLI
with an equivalent root (`bwrap-bare`).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import isolation
from isolation import IsolationPolicy
from isolation.backends.bwrap import DEV_COPIES_PLACEHOLDER, build_bwrap_command
from isolation.backends.native import prepared

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "300"))
# Idle time before each timed call, the same for every contender: what a backend does in
# the background after a run (native: building the next sandbox) must not land on the next
# contender's clock. Back-to-back cost is what bench_throughput measures.
GAP = float(os.environ.get("BENCH_GAP_MS", "10")) / 1000
TRUE = ["/bin/true"]


def _on_demand() -> object:
    """The native backend with nothing prepared ahead of demand."""
    size, prepared.POOL.size = prepared.POOL.size, 0
    try:
        return isolation.run(TRUE, IsolationPolicy(), backend="native")
    finally:
        prepared.POOL.size = size


def _bare(argv: list[str]) -> list[str]:
    """The backend's argv without what only the backend provides at launch, for an
    equivalent root: no seccomp filter (a memfd), and where a root caller's backend binds
    a private copy of a device node (made per run), the host's node itself bound there."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--seccomp":
            i += 2
        elif argv[i] == "--dev-bind" and argv[i + 1].startswith(DEV_COPIES_PLACEHOLDER):
            out += ["--dev-bind", argv[i + 2], argv[i + 2]]
            i += 3
        else:
            out.append(argv[i])
            i += 1
    return out


def contenders() -> dict[str, Callable[[], object]]:
    strict = IsolationPolicy()
    # The bwrap command line the backend would run, executed bare: what bwrap itself costs.
    raw = _bare(build_bwrap_command(strict, TRUE))
    return {
        "subprocess": lambda: subprocess.run(TRUE, check=True),
        # What isolation.run does with the output by default (issue 14's comparison).
        "subprocess-captured": lambda: subprocess.run(TRUE, check=True, capture_output=True),
        "native-on-demand": _on_demand,
        "native": lambda: isolation.run(TRUE, strict, backend="native"),
        "bwrap": lambda: isolation.run(TRUE, strict, backend="bwrap"),
        "bwrap-bare": lambda: subprocess.run(raw, check=True),
    }


def main() -> int:
    runs = contenders()
    for fn in runs.values():  # warm caches (plan, seccomp compile, imports)
        for _ in range(5):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs.items())
    rng = random.Random(0)
    for _ in range(ROUNDS):
        # A new order each round: what one contender leaves behind for the kernel to
        # finish (namespace teardown, deferred frees) falls on a random next one.
        rng.shuffle(order)
        for name, fn in order:
            time.sleep(GAP)
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) * 1000 for name, v in samples.items()}
    print(
        f"isolation.run(['/bin/true'], strict policy): median of {ROUNDS} rounds (contenders in a "
        f"shuffled order each round), {GAP * 1000:.0f} ms idle before each call, {os.cpu_count()} cpus"
    )
    for name, ms in med.items():
        p90 = statistics.quantiles(samples[name], n=10)[-1] * 1000
        print(f"  {name:20s} {ms:7.2f} ms   (p90 {p90:.2f} ms)")
    native, sub, cap = med["native"], med["subprocess"], med["subprocess-captured"]
    print(f"  native - subprocess = {native - sub:.2f} ms, native / subprocess = {native / sub:.2f}x")
    print(f"  native / subprocess-captured = {native / cap:.2f}x (target <= 1.9x; both capture the output)")
    print(f"  bwrap / native      = {med['bwrap'] / native:.2f}x (target >= 3x)")
    print(f"  bwrap-bare / native = {med['bwrap-bare'] / native:.2f}x (bwrap alone, no seccomp, no Python)")
    print(f"  bwrap / bwrap-bare  = {med['bwrap'] / med['bwrap-bare']:.2f}x (target <= 1.4x: the backend over the CLI)")
    print(
        f"  native-on-demand - subprocess = {med['native-on-demand'] - med['subprocess']:.2f} ms, "
        f"bwrap / native-on-demand = {med['bwrap'] / med['native-on-demand']:.2f}x (nothing prepared ahead)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
