"""Ordinary build-and-test workloads still work under the default syscall filter."""

from __future__ import annotations

import os
import shutil

from commands import PYTHON

import isolation
from isolation import IsolationPolicy
from isolation.seccomp import compile_profile


def sh(script: str, backend: str, policy: IsolationPolicy | None = None) -> str:
    res = isolation.run(["sh", "-euc", script], policy, backend=backend, timeout=120)
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    assert f"seccomp:default:sha256={compile_profile('default').digest}" in res.enforced
    return res.stdout.decode()


def test_python_threads_fork_exec_proc_self(backend: str) -> None:
    code = r"""
import asyncio, os, socket, subprocess, threading
out = []
ts = [threading.Thread(target=out.append, args=(i,)) for i in range(16)]  # pthread_create: clone3 -> ENOSYS -> clone
[t.start() for t in ts]; [t.join() for t in ts]
assert sorted(out) == list(range(16))
pid = os.fork()
if pid == 0:
    os._exit(7)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
assert subprocess.run(["sh", "-c", "echo child"], capture_output=True).stdout == b"child\n"
status = open("/proc/self/status").read()
assert "Seccomp:\t2" in status
assert os.listdir("/proc/self/fd") and open("/proc/self/maps").read() and os.readlink("/proc/self/exe")
a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.close()  # TCP: see test_escape
async def main():
    p = await asyncio.create_subprocess_exec("true"); return await p.wait()
assert asyncio.run(main()) == 0
print("ok")
"""
    res = isolation.run([PYTHON, "-c", code], backend=backend, timeout=120)
    assert (res.returncode, res.stdout, res.stderr) == (0, b"ok\n", b"")


def test_sh_pipelines(backend: str) -> None:
    out = sh("seq 1 2000 | sort -rn | head -n 3 | tr '\\n' ' '; echo; (echo a; echo b) | wc -l", backend)
    assert out == "2000 1999 1998 \n2\n"


def test_git_init_and_commit(backend: str) -> None:
    assert shutil.which("git"), "git is needed for the workload tests"
    script = """
cd /work
g() { git -c user.name=Sandbox -c user.email=sandbox@example.invalid -c init.defaultBranch=main "$@"; }
g init -q repo && cd repo
echo hello > file && g add file && g commit -q -m first
echo more >> file && g commit -qam second
g log --format=%s | tr '\\n' ' '; g status --porcelain | wc -l
"""
    assert sh(script, backend) == "second first 0\n"


def test_tar_round_trip(backend: str) -> None:
    script = """
cd /work && mkdir -p d/sub && echo data > d/sub/f && ln -s sub/f d/link
tar czf a.tgz d && rm -r d && tar xzf a.tgz && cat d/link && tar tzf a.tgz | sort | tr '\\n' ' '; echo
"""
    assert sh(script, backend) == "data\nd/ d/link d/sub/ d/sub/f \n"


def test_gcc_hello_and_pthreads(backend: str) -> None:
    assert os.access("/usr/bin/gcc", os.X_OK), "gcc is needed for the workload tests"
    script = r"""
cd /work
cat > hello.c <<'EOF'
#include <pthread.h>
#include <stdio.h>
static void *run(void *arg) { return arg; }
int main(void) {
    pthread_t t; void *r = 0;
    if (pthread_create(&t, 0, run, (void *)42) || pthread_join(t, &r)) return 1;
    printf("hello %ld\n", (long)r);
    return 0;
}
EOF
gcc -O2 -pthread hello.c -o hello && ./hello
"""
    assert sh(script, backend) == "hello 42\n"
