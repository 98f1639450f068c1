"""Cost of the default syscall filter on a syscall-heavy loop, side by side in one run.

A small C program times N raw syscalls with clock_gettime and prints
nanoseconds per call, so sandbox start-up is not part of the number. For each
available backend it runs with the default filter and with the filter off
(``seccomp="none"``, same sandbox otherwise), interleaved round by round, plus
on the host. `getppid` is the issue's target (< 5 % overhead): the filter
always allows it, so the kernel's per-filter action cache skips the BPF
entirely. `ioctl(-1, TCGETS)` has argument rules, so the BPF really runs on
every call: the worst case for an allowed syscall. `openat` of a missing path
has argument rules too (the set-id mode bits), with a path lookup around them.

Usage: python benchmarks/bench_seccomp.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import isolation
from isolation import IsolationPolicy
from isolation.backends import get_backend
from isolation.errors import IsolationError
from isolation.seccomp import compile_profile

C_SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* argv: getppid|ioctl|openat N [allow-all|FILE]: optionally load a filter first. */
int main(int argc, char **argv) {
    long n = atol(argv[2]);
    int ioctl_loop = strcmp(argv[1], "ioctl") == 0;
    int openat_loop = strcmp(argv[1], "openat") == 0;
    if (argc > 3) {
        static struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        static char buf[65536];
        struct sock_fprog prog = {.len = 1, .filter = allow};
        if (strcmp(argv[3], "allow-all") != 0) {
            FILE *f = fopen(argv[3], "rb");
            if (!f) return 2;
            prog.len = fread(buf, 1, sizeof buf, f) / 8;
            prog.filter = (struct sock_filter *)buf;
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) return 3;
    }
    struct termios t;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (ioctl_loop)
            syscall(SYS_ioctl, -1, TCGETS, &t);
        else if (openat_loop)
            syscall(SYS_openat, AT_FDCWD, "/nonexistent-bench", O_RDONLY, 0);
        else
            syscall(SYS_getppid);
    }
    printf("%.2f\n", (now() - t0) / n);
    return 0;
}
"""


def build(tmp: str) -> str:
    src, exe = os.path.join(tmp, "loop.c"), os.path.join(tmp, "loop")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
    return exe


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()

    backends = []
    for name in ("native", "bwrap"):
        try:
            if get_backend(name).availability().ok:
                backends.append(name)
        except IsolationError:
            pass
    with tempfile.TemporaryDirectory(prefix="bench-seccomp-") as tmp:
        os.chmod(tmp, 0o755)
        exe = build(tmp)
        filtered = IsolationPolicy().with_read(tmp)
        unfiltered = filtered.evolve(seccomp="none", unsafe_no_seccomp=True)
        f = compile_profile("default")
        bpf_file = os.path.join(tmp, "default.bpf")
        with open(bpf_file, "wb") as out:
            out.write(f.bpf)
        # (name, backend or None for the host, policy, filter the program loads itself)
        contenders: list[tuple[str, str | None, IsolationPolicy | None, str | None]] = [
            ("host, no filter", None, None, None),
            ("host, allow-all filter", None, None, "allow-all"),
            ("host, default filter", None, None, bpf_file),
        ]
        for b in backends:
            contenders += [
                (f"{b}, filter off", b, unfiltered, None),
                (f"{b}, off + allow-all", b, unfiltered, "allow-all"),
                (f"{b}, default filter", b, filtered, None),
            ]

        def once(loop: str, backend: str | None, policy: IsolationPolicy | None, load: str | None) -> float:
            argv = [exe, loop, str(args.calls), *([load] if load else [])]
            if backend is None:
                out = subprocess.run(argv, capture_output=True, check=True).stdout
            else:
                res = isolation.run(argv, policy, backend=backend, timeout=300)
                if res.returncode != 0:
                    raise SystemExit(f"{backend}: {res.stderr.decode()}")
                out = res.stdout
            return float(out)

        print(f"filter: default, {len(f.bpf) // 8} BPF instructions, libseccomp {f.libseccomp}, {f.arch}")
        print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs; {args.calls} calls x {args.rounds} rounds")
        for loop in ("getppid", "ioctl", "openat"):
            samples: dict[str, list[float]] = {c[0]: [] for c in contenders}
            for _ in range(args.rounds):  # interleaved: drift hits every contender alike
                for name, backend, policy, load in contenders:
                    samples[name].append(once(loop, backend, policy, load))
            med = {name: statistics.median(v) for name, v in samples.items()}
            print(f"\n{loop}() loop, median ns per call:")
            for name in med:
                print(f"  {name:28} {med[name]:8.2f}")
            for where in ("host", *backends):
                off = med[f"{where}, no filter" if where == "host" else f"{where}, filter off"]
                allow = med[f"{where}, allow-all filter" if where == "host" else f"{where}, off + allow-all"]
                on = med[f"{where}, default filter"]
                print(
                    f"  {where}: default filter {100 * (on / off - 1):+.1f} % vs no filter; "
                    f"{100 * (on / allow - 1):+.1f} % vs a 1-instruction allow-all filter"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
