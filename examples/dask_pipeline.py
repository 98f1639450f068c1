"""Pipeline stages on a Dask cluster: each runs in its own sandbox on a Dask worker.

    pip install 'isolation[dask]'
    python examples/dask_pipeline.py DATA_DIR [--workers 2] [--secret FILE] [--connect PORT] [--grant]
    python examples/dask_pipeline.py DATA_DIR --bench 200     # runs/s of a small Python stage

Starts a `LocalCluster` of worker processes (two by default) and hands the
stage executor Dask's `concurrent.futures` interface: the executor checks every
task here, then each Dask worker builds the sandbox and enforces the policy on
its own host, and only the decoded results come back. It counts the words of
every file in DATA_DIR, then probes what a stage that declared nothing can do
on a worker: read FILE (a host secret) and connect to PORT on 127.0.0.1.
`--grant` declares `FsRead(FILE)` and `Network` for the probe (the control:
the same probe then succeeds).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import socket
import sys
import time

import isolation
from isolation import FsRead, Network, Pure


@isolation.stage()  # its FsRead is added at run time, once DATA_DIR is known
def count_words(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return len(f.read().split())


@isolation.stage(effects=[Pure])
def probe(secret: str, port: int) -> dict[str, str]:
    """What this stage may do on its worker: read `secret`, connect to 127.0.0.1:`port`."""
    report = {}
    try:
        with open(secret, encoding="utf-8") as f:
            report["read secret"] = f"ok: {len(f.read())} bytes"
    except OSError as exc:
        report["read secret"] = f"denied: {type(exc).__name__}"
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        report["connect"] = "ok"
    except OSError as exc:
        report["connect"] = f"denied: {type(exc).__name__}"
    return report


@isolation.stage(effects=[Pure])
def square(n: int) -> int:
    return n * n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker (default 2)")
    parser.add_argument("--start-method", choices=["spawn", "fork", "forkserver"], default="spawn")
    parser.add_argument("--secret", help="a host file the probe stage tries to read")
    parser.add_argument("--connect", type=int, help="a port on 127.0.0.1 the probe stage tries to connect to")
    parser.add_argument("--grant", action="store_true", help="declare FsRead(SECRET) and Network for the probe")
    parser.add_argument("--bench", type=int, metavar="N", help="only measure: N runs of a small Python stage")
    args = parser.parse_args()
    data = os.path.realpath(args.data_dir)

    import dask
    from distributed import Client, LocalCluster, get_task_stream

    dask.config.set({"distributed.worker.multiprocessing-method": args.start_method})
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=args.threads, processes=True,
        dashboard_address=None, silence_logs=logging.ERROR,
    )  # fmt: skip
    with cluster, Client(cluster) as client:
        # pure=False: every task runs, even two with equal arguments (they are runs, not values).
        executor = isolation.StageExecutor(executor=client.get_executor(pure=False))
        if args.bench:
            executor.run([square(i) for i in range(2 * args.workers * args.threads)])  # warm up every worker
            start = time.perf_counter()
            results = executor.run([square(i) for i in range(args.bench)])
            elapsed = time.perf_counter() - start
            assert [r.unwrap() for r in results] == [i * i for i in range(args.bench)]
            print(f"{args.bench} runs on {args.workers} worker(s) x {args.threads} threads: {elapsed:.2f} s, "
                  f"{args.bench / elapsed:.1f} runs/s")  # fmt: skip
            return 0

        names = sorted(os.listdir(data))
        counter = count_words.with_effects(FsRead(data))
        tasks = [counter(os.path.join(data, n)) for n in names]
        if args.secret and args.connect:
            grant = (FsRead(os.path.realpath(args.secret)), Network) if args.grant else ()
            tasks.append(probe.with_effects(*grant)(os.path.realpath(args.secret), args.connect))
        with get_task_stream(client) as stream:
            results = executor.run(tasks)

        for name, r in zip(names, results, strict=False):
            print(f"count_words({name}): {r.value} words" if r.ok else f"count_words({name}): FAILED: {r.error}")
        if len(results) > len(names):
            print(f"probe on a worker: {json.dumps(results[-1].unwrap(), sort_keys=True)}")
        per_worker = collections.Counter(t["worker"] for t in stream.data)
        print(f"{len(results)} stages ran on {len(per_worker)} of {args.workers} Dask workers")
        first = results[0].run if results else None
        if first is not None:
            layers = sorted({e.split(":")[0] for e in first.enforced})
            print(f"each stage ran in its own {first.backend} sandbox on a worker; layers: {', '.join(layers)}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
