/* isolation-init: pid 1 of a native sandbox.
 *
 * sandbox.c builds the sandbox in a copy of the caller's process, forks the
 * worker that becomes the command, then executes this program in place of
 * itself.  The exec matters: a copy of a large Python process left alive
 * for the sandbox's lifetime would keep every page of the caller shared
 * copy-on-write, so the caller would pay a page fault (and a page) for each
 * page it touches while the sandbox runs.
 *
 * Usage (internal): isolation-init WORKER_PID   with the status pipe on fd 3.
 * Forwards every catchable signal to the worker, reaps every orphan, writes
 * the worker's wait status (4 bytes, native order) to fd 3 and exits; the
 * kernel then kills whatever is left in the pid namespace.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    /* First: the command (same uid) must not be able to inspect or write
     * this process, which is outside its seccomp filter and Landlock domain. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return 125;
    if (argc != 2)
        return 125;
    pid_t worker = (pid_t)strtol(argv[1], NULL, 10);
    if (worker <= 0)
        return 125;
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL); /* already blocked by sandbox.c; kept for clarity */
    for (;;) {
        /* The worker may have ended before this program started: reap first. */
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid != worker)
                continue;
            uint32_t st = (uint32_t)status;
            ssize_t n;
            do
                n = write(3, &st, sizeof st);
            while (n < 0 && errno == EINTR);
            _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig > 0 && sig != SIGCHLD)
            kill(worker, sig);
    }
}
