"""Stages on a Dask LocalCluster of two workers started by START_METHOD (spawn or fork),
and what the workers' prepared sandboxes do: run by tests/test_dask.py in a process of
its own, it prints one JSON line of what it saw.

    python tests/dask_workers.py spawn|fork
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import dask
import distributed
import stage_funcs as sf
import stage_hostile as sh

import isolation
from isolation.backends.native import settle

PREPARE_THREADS = ("isolation-prepare",)


def pool_state() -> dict[str, object]:
    """On a worker: its pid, its prepared-sandbox threads and its prepared sandboxes (child processes)."""
    me, prepared = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            continue
        if parent == me and cmdline == b"isolation-init\0":  # no run is in flight: a prepared sandbox
            prepared.append(int(pid))
    threads = sorted({t.name for t in threading.enumerate() if t.name in PREPARE_THREADS})
    return {"pid": me, "threads": threads, "prepared": prepared}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main() -> None:
    seen: dict[str, object] = {}
    with dask.config.set({"distributed.worker.multiprocessing-method": sys.argv[1]}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        )
    client = distributed.Client(cluster)
    ex = isolation.StageExecutor(backend="native", executor=client.get_executor(pure=False))
    seen["results"] = [r.unwrap()["sum"] for r in ex.run([sf.describe(i, [i]) for i in range(8)])]
    # Errors come back as such; a hostile reply is bounded on the worker and fails only its stage.
    bounded = isolation.StageExecutor(
        backend="native", executor=client.get_executor(pure=False), max_reply=1 << 20, max_reply_depth=50
    )
    tasks = [sh.deep(100_000), sh.huge(16), sf.fail("boom"), sf.describe(1, [2])]
    seen["errors"] = [
        {
            "type": type(r.error).__name__,
            "error": str(r.error),
            "error_type": getattr(r.error, "error_type", None),
            "stdout": None if r.run is None else len(r.run.stdout),
            "value": r.value,
        }
        for r in bounded.run(tasks)
    ]

    def ran() -> list[dict[str, object]]:
        """Run stages until every worker has prepared a sandbox (the pools build them when idle)."""
        for _ in range(300):
            ex.run([sf.describe(i, [i]) for i in range(4)])
            states = list(client.run(pool_state).values())
            if all(s["prepared"] and s["threads"] == sorted(PREPARE_THREADS) for s in states):
                break
            time.sleep(0.1)
        return states

    seen["ran"] = ran()
    client.run(settle)
    seen["settled"] = list(client.run(pool_state).values())
    gone = [pid for s in seen["ran"] for pid in s["prepared"]]
    seen["alive after settle"] = [pid for pid in gone if alive(pid)]

    seen["ran again"] = states = ran()
    client.close()
    cluster.close()
    pids = [s["pid"] for s in states] + [pid for s in states for pid in s["prepared"]]
    seen["alive after close"] = [pid for pid in pids if alive(pid)]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
