/* isolation-init: pid 1 of a native sandbox.
 *
 * spawn.c builds the sandbox in a copy of the caller's process and then
 * executes this program in place of itself, before any process of the
 * sandbox other than this one exists: so from the command's first
 * instruction, pid 1 is this program, with its own memory, an argv that only
 * names it, an empty environment, and non-dumpable (the command, same uid,
 * can neither read its memory nor write it).  The exec matters for the
 * caller too: a copy of a large Python process left alive for the sandbox's
 * lifetime would keep every page of the caller shared copy-on-write.
 *
 * Usage (internal): `isolation-init`, with fd 3 a SOCK_SEQPACKET socket and,
 * when Landlock applies, fd 4 the sandbox's Landlock ruleset.  It waits on
 * fd 3 for one command and its descriptors (worker.h), forks the worker,
 * which restricts itself (Landlock with fd 4; the seccomp filter holds
 * both already) and executes it; the
 * status pipe comes with the command.  On demand the command is in the
 * socket already; a sandbox prepared ahead of demand waits for it.
 *
 * Then: forward every catchable signal to the worker and reap every orphan.
 * When the worker has ended: kill and reap what is left, write a report (the
 * worker's wait status and the rusage of everything reaped, struct
 * iso_report) to the status pipe, and exit.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "command.h"
#include "worker.h"
#include "syscalls.h"

/* The worker shares init's memory until its execve (vfork semantics): no
 * page tables are copied; it runs on this stack, init waits meanwhile. */
static char worker_stack[64 * 1024] __attribute__((aligned(16)));

/* The message, with an inline payload (8-byte aligned for the rlimits), and
 * argv + envp for it (every string takes a byte at least). */
static struct {
    struct iso_command_msg head;
    uint64_t payload[ISO_COMMAND_INLINE / sizeof(uint64_t)];
} message;
static const char *inline_strings[ISO_COMMAND_INLINE + 2];

static int worker_main(void *arg)
{
    iso_exec_command((const struct iso_exec *)arg);
}

/* A payload too large for the message: its memfd, mapped.  Sealed against
 * writes, growth and shrinking, so what init parses cannot change under it,
 * nor fault. */
static const char *map_payload(int fd, uint64_t len)
{
    const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    struct stat st;
    int have = fcntl(fd, F_GET_SEALS);
    CHECK(have, "receive command", "payload seals");
    CHECK(fstat(fd, &st), "receive command", "payload");
    if ((have & seals) != seals || len == 0 || (uint64_t)st.st_size != len)
        iso_die("receive command", "payload", EINVAL);
    void *buf = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (buf == MAP_FAILED)
        iso_die("receive command", "mmap(payload)", errno);
    return buf;
}

/* Receive the command, start the worker; returns its pid and sets *status_fd. */
static pid_t run_command(int *status_fd)
{
    /* Off the command's path: SIG_IGN dispositions inherited from the caller
     * survived this program's execve; the worker starts with them all SIG_DFL. */
    iso_default_handlers();
    int ruleset_fd = fcntl(4, F_GETFD) >= 0 ? 4 : -1;
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int) * ISO_COMMAND_FDS)];
    } control;
    struct iovec iov = {.iov_base = &message, .iov_len = sizeof message};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.bytes,
                         .msg_controllen = sizeof control.bytes};
    ssize_t len;
    do
        len = recvmsg(3, &msg, MSG_CMSG_CLOEXEC);
    while (len < 0 && errno == EINTR);
    if (len <= 0) /* the caller let this sandbox go unused */
        _exit(0);
    close(3);
    int fds[ISO_COMMAND_FDS];
    size_t nfds = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if (nfds > ISO_COMMAND_FDS)
            _exit(125);
        memcpy(fds, CMSG_DATA(c), sizeof(int) * nfds);
    }
    if (nfds < 5)
        _exit(125); /* no error pipe to report on: the caller sees this exit status */
    iso_err_fd = fds[3];
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
        iso_die("receive command", NULL, EMSGSIZE);
    const struct iso_command_msg *head = &message.head;
    int cgroup = head->flags & ISO_CMD_CGROUP ? 5 : -1;
    int memfd = head->flags & ISO_CMD_MEMFD ? (cgroup >= 0 ? 6 : 5) : -1;
    size_t payload_len = (size_t)head->payload_len;
    if ((size_t)len < sizeof *head || head->magic != ISO_COMMAND_MAGIC ||
        nfds != (size_t)(5 + (cgroup >= 0) + (memfd >= 0)) ||
        (size_t)len != sizeof *head + (memfd >= 0 ? 0 : payload_len))
        iso_die("receive command", NULL, EINVAL);
    const char *payload = (const char *)message.payload;
    const char **strings = inline_strings;
    size_t n_strings = sizeof inline_strings / sizeof *inline_strings;
    if (memfd >= 0) {
        payload = map_payload(fds[memfd], head->payload_len);
        n_strings = iso_command_strings(payload, payload_len);
        if (n_strings == 0)
            iso_die("receive command", NULL, EINVAL);
        strings = mmap(NULL, n_strings * sizeof *strings, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (strings == MAP_FAILED)
            iso_die("receive command", "mmap(argv)", errno);
    }
    struct iso_exec e;
    memset(&e, 0, sizeof e);
    if (iso_unpack_command(payload, payload_len, &e, strings, n_strings) < 0)
        iso_die("receive command", NULL, EINVAL);
    for (int i = 0; i < 3; i++)
        e.stdio[i] = fds[i];
    e.handlers_default = 1;
    e.die_with_parent = 1;
    e.drop_caps_upto = -1; /* none left since this sandbox was built */
    e.landlock_fd = ruleset_fd;
    /* Join the caller's cgroup for this sandbox before the command exists. */
    if (cgroup >= 0 && write(fds[cgroup], "0", 1) != 1)
        iso_die("join cgroup", "cgroup.procs", errno);
    pid_t worker = clone(worker_main, worker_stack + sizeof worker_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &e);
    if (worker < 0)
        iso_die("clone(worker)", NULL, errno);
    if (memfd >= 0) { /* the worker has executed the command (or died): done with */
        munmap((void *)payload, payload_len);
        munmap(strings, n_strings * sizeof *strings);
    }
    for (size_t i = 0; i < nfds; i++)
        if (i != 4)
            close(fds[i]);
    if (ruleset_fd >= 0)
        close(ruleset_fd);
    *status_fd = fds[4];
    return worker;
}

/* The command has ended: end every other process of the sandbox and reap
 * it, then report.  So once the caller has the report, nothing of the
 * sandbox runs any more; only this process's exit (the kernel tearing down
 * the namespaces) is left, and the caller need not wait for it. */
static void __attribute__((noreturn)) report(int status_fd, int status)
{
    /* Every process left in this pid namespace descends from the worker, and
     * an orphan is reparented to pid 1: with no child left, the namespace is
     * empty, and kill(-1) (which walks every process of the host) is spared.
     * __WALL: a child cloned with CLONE_PARENT and no exit signal is one too. */
    pid_t left;
    while ((left = waitpid(-1, NULL, WNOHANG | __WALL)) > 0)
        ;
    if (left == 0) {
        kill(-1, SIGKILL); /* every process of this pid namespace but pid 1 */
        while (waitpid(-1, NULL, __WALL) > 0)
            ;
    }
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    getrusage(RUSAGE_CHILDREN, &ru);
    struct iso_report rep = {
        .status = (uint32_t)status,
        .utime_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec,
        .stime_us = (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec,
        .maxrss_kib = (uint64_t)ru.ru_maxrss,
    };
    ssize_t n;
    do
        n = write(status_fd, &rep, sizeof rep);
    while (n < 0 && errno == EINTR);
    /* The write woke the caller onto this CPU (a pipe's wakeup is "sync":
     * the writer is expected to sleep next), but this exit tears down the
     * namespaces, 0.1-0.2 ms of kernel work: let the caller run first. */
    sched_yield();
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

int main(int argc, char **argv)
{
    /* First: the command (same uid) must not be able to inspect or write
     * this process, which is outside its Landlock domain (the seccomp filter
     * holds here already: spawn.c loads it before executing this program). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return 125;
    (void)argv;
    if (argc != 1)
        return 125;
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL); /* already blocked by spawn.c; kept for clarity */
    int status_fd = -1;
    pid_t worker = run_command(&status_fd);
    for (;;) {
        /* The worker may have ended already: reap first. */
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid != worker)
                continue;
            report(status_fd, status);
        }
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig > 0 && sig != SIGCHLD)
            kill(worker, sig);
    }
}
