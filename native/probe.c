/* What the kernel lets this process use for a sandbox: the probes behind
 * isolation/userns.py's diagnoses (declared in sandbox.h).  They run in the
 * caller, not after clone; they are C so that our Python has one FFI
 * mechanism (cffi). */

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/seccomp.h>

#include "sandbox.h"
#include "landlock.h"
#include "syscalls.h"

int iso_probe_userns(int *fork_err)
{
    *fork_err = 0;
    pid_t pid = fork();
    if (pid < 0) {
        *fork_err = errno;
        return -1;
    }
    if (pid == 0) /* async-signal-safe calls only: the caller has threads */
        _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : errno > 0 && errno < 255 ? errno : 255);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno; /* cannot happen for our own child: a refusal without a known cause */
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

int iso_probe_seccomp(void)
{
    uint32_t action = SECCOMP_RET_KILL_PROCESS; /* the action our filters use */
    return syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0 ? 0 : errno;
}

int iso_landlock_abi(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, (size_t)0, ISO_LANDLOCK_CREATE_RULESET_VERSION);
    return abi > 0 ? (int)abi : -errno;
}
