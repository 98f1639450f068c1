"""Throughput of short sandboxed runs (/bin/true) with 1, 2, 8 and 32 concurrent workers.

For each available backend (bwrap; native when built and available), threads
call `isolation.run` back to back for a fixed number of runs; reported as runs
per second. Two more measurements per backend:

- the cost of limits: the same runs with cpu_seconds, memory, max_open_files
  and max_file_size set (rlimits; for bwrap that adds --block-fd, prlimit(2)
  on the waiting sandbox and the release), and with max_pids on top ("+pids":
  RLIMIT_NPROC for an unprivileged caller; for a root caller under bwrap a
  cgroup v1 pids directory per run, created, joined and removed);
- kill-to-reaped: how long `Sandbox.kill()` + `wait()` take for a running tree
  of seven processes, until no process of the sandbox is left.

Configurations are interleaved round by round so machine noise hits all alike.
BENCH_RUNS (default 160 per configuration per round) and BENCH_ROUNDS (3) scale it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import attrs

import isolation
from isolation import IsolationPolicy
from isolation.backends import get_backend
from isolation.errors import IsolationUnavailable

RUNS = int(os.environ.get("BENCH_RUNS", "160"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WORKERS = (1, 2, 8, 32)
TRUE = ["/bin/true"]
TREE = "sleep 600 & (sleep 600 & sleep 600) & sh -c 'sleep 600; :' & sleep 600"


def backends() -> list[str]:
    names = []
    for name in ("bwrap", "native"):
        try:
            if get_backend(name).availability().ok:
                names.append(name)
        except IsolationUnavailable:
            continue
    return names


def limited(policy: IsolationPolicy, *, pids: bool = False) -> IsolationPolicy:
    limits = attrs.evolve(policy.limits, cpu_seconds=60, memory=1 << 30, max_open_files=256, max_file_size=1 << 30)
    if pids:
        limits = attrs.evolve(limits, max_pids=256)
    return policy.evolve(limits=limits)


def enforces_pids(backend: str) -> bool:
    return "max_pids" in getattr(get_backend(backend), "enforced_limits", frozenset())


def throughput(backend: str, workers: int, policy: IsolationPolicy) -> float:
    def one(_: int) -> None:
        res = isolation.run(TRUE, policy, backend=backend)
        if res.returncode != 0:
            raise RuntimeError(res)

    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        list(pool.map(one, range(RUNS)))
        return RUNS / (time.perf_counter() - t0)


def kill_to_reaped(backend: str) -> float:
    with isolation.spawn(["sh", "-c", TREE], backend=backend) as sb:
        time.sleep(0.2)  # let the tree start
        t0 = time.perf_counter()
        sb.kill()
        sb.wait()
        return time.perf_counter() - t0


def main() -> int:
    names = backends()
    strict = IsolationPolicy()
    configs = [(b, w, "plain", strict) for b in names for w in WORKERS]
    configs += [(b, w, "limits", limited(strict)) for b in names for w in (1, 8)]
    configs += [(b, w, "+pids", limited(strict, pids=True)) for b in names if enforces_pids(b) for w in (1, 8)]
    for b in names:  # warm up (plan, seccomp compile, imports)
        throughput(b, 1, strict)
    rates: dict[tuple[str, int, str], list[float]] = {(b, w, k): [] for b, w, k, _ in configs}
    kills: dict[str, list[float]] = {b: [] for b in names}
    for _ in range(ROUNDS):
        for b, w, k, pol in configs:
            rates[(b, w, k)].append(throughput(b, w, pol))
        for b in names:
            kills[b] += [kill_to_reaped(b) for _ in range(5)]
    print(f"isolation.run(['/bin/true']): runs/s, median of {ROUNDS} rounds of {RUNS} runs, {os.cpu_count()} cpus")
    print(f"  {'backend':8} {'policy':7} " + " ".join(f"{w:>3} workers" for w in WORKERS))
    for b in names:
        for k in ("plain", "limits", "+pids"):
            cells = []
            for w in WORKERS:
                v = rates.get((b, w, k))
                cells.append(f"{statistics.median(v):11.1f}" if v else f"{'-':>11}")
            if not any(key[0] == b and key[2] == k for key in rates):
                continue
            print(f"  {b:8} {k:7} " + " ".join(cells))
    for b in names:
        ms = sorted(x * 1000 for x in kills[b])
        med = statistics.median(ms)
        print(f"  kill-to-reaped, {b}: median {med:.1f} ms, max {ms[-1]:.1f} ms ({len(ms)} trees of 7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
