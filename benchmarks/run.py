"""Run every benchmark in this directory (`nox -s bench`), one after another.

Each `bench_*.py` is a standalone script that measures its contenders side by
side in one run and prints ratios; results are recorded in RESULTS.md.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    only = sys.argv[1:]
    status = 0
    for script in sorted(glob.glob(os.path.join(here, "bench_*.py"))):
        name = os.path.basename(script)[: -len(".py")]
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        status |= subprocess.run([sys.executable, script], check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
