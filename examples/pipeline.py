"""A pipeline whose stages declare their effects; each runs in its own sandbox.

    python examples/pipeline.py DATA_DIR

Counts the words of every file in DATA_DIR (one sandboxed Python stage per
file, in parallel), sorts the file names with a sandboxed command stage, and
combines the counts in a pure stage. A stage sees only what it declared: a
file in DATA_DIR that is a symlink to somewhere else cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import isolation
from isolation import FsRead, Pure


@isolation.stage(effects=[Pure])
def total(counts: dict[str, int]) -> dict[str, int]:
    """Pure: sees no host files at all, only its JSON arguments."""
    return {"files": len(counts), "words": sum(counts.values())}


@isolation.stage()  # its FsRead is added at run time, once DATA_DIR is known
def count_words(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return len(f.read().split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    data = os.path.realpath(parser.parse_args().data_dir)
    names = sorted(os.listdir(data))

    executor = isolation.StageExecutor(max_workers=4)
    counter = count_words.with_effects(FsRead(data))
    listing = isolation.command_stage("ls", ["ls", "-1", data], effects=[FsRead(data)])
    results = executor.run([counter(os.path.join(data, n)) for n in names] + [listing()])

    counts = {}
    for name, r in zip(names, results, strict=False):
        if r.ok:
            counts[name] = r.value
            print(f"count_words({name}): {r.value} words")
        else:
            print(f"count_words({name}): FAILED: {r.error}")
    print(f"ls (command stage): {results[-1].value.stdout.decode().split()}")
    summary = executor.call(total(counts))
    print(f"total: {json.dumps(summary)}")
    first = results[0].run
    if first is not None:
        layers = sorted({e.split(":")[0] for e in first.enforced})
        print(f"each stage ran in its own {first.backend} sandbox; layers enforced: {', '.join(layers)}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
