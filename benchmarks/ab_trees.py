"""A/B of prepared native latency between two source trees, side by side.

Usage: `python benchmarks/ab_trees.py OLD_TREE NEW_TREE` (each a checkout with its
extension built in place: `python setup.py build_ext --inplace`). ROUNDS (default 6)
rounds; in each, a fresh process per tree (alternating, the order flipped every
round) times N (default 200) runs of `isolation.run(["/bin/true"])` on the native
backend, each after 10 ms idle, interleaved with `subprocess.run(capture_output=True)`.
Prints per round the medians and their ratio: compare the ratios pairwise, as
absolute times swing with the machine. Not part of `nox -s bench` (it needs two trees).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

ONE_TREE = r"""
import json, os, statistics, subprocess, time
import isolation
from isolation import IsolationPolicy
TRUE, policy = ["/bin/true"], IsolationPolicy()
for _ in range(20):
    isolation.run(TRUE, policy, backend="native")
    time.sleep(0.01)
native, sub = [], []
for _ in range(int(os.environ.get("N", "200"))):
    time.sleep(0.01)
    t = time.perf_counter(); isolation.run(TRUE, policy, backend="native"); native.append(time.perf_counter() - t)
    time.sleep(0.01)
    t = time.perf_counter(); subprocess.run(TRUE, capture_output=True); sub.append(time.perf_counter() - t)
print(json.dumps([statistics.median(native) * 1000, statistics.median(sub) * 1000]))
"""


def main() -> int:
    trees = sys.argv[1:]
    if len(trees) != 2:
        print(__doc__)
        return 2
    results: dict[str, list[tuple[float, float]]] = {t: [] for t in trees}
    for r in range(int(os.environ.get("ROUNDS", "6"))):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
            out = subprocess.run([sys.executable, "-c", ONE_TREE], env=env, capture_output=True, text=True, cwd="/")
            if out.returncode:
                print(out.stderr[-2000:])
                return 1
            native, sub = json.loads(out.stdout)
            results[tree].append((native, sub))
    for tree, rows in results.items():
        print(tree)
        print("  native ms:   ", " ".join(f"{n:.3f}" for n, _ in rows))
        print("  subprocess:  ", " ".join(f"{s:.3f}" for _, s in rows))
        print("  ratio:       ", " ".join(f"{n / s:.2f}" for n, s in rows))
        print(f"  median ratio: {statistics.median(n / s for n, s in rows):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
