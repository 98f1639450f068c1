/* See worker.h. */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "sandbox.h"
#include "syscalls.h"
#include "worker.h"

void iso_drop_bounding_set(int cap_last_cap)
{
    for (int cap = 0; cap <= cap_last_cap; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            iso_die("prctl(PR_CAPBSET_DROP)", NULL, errno);
}

void iso_clear_capabilities(void)
{
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", NULL);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    CHECK(syscall(SYS_capset, &hdr, data), "capset", NULL);
}

void iso_drop_capabilities(int cap_last_cap)
{
    iso_drop_bounding_set(cap_last_cap);
    iso_clear_capabilities();
}

/* Become uid/gid with no supplementary groups.  Raw syscalls: this process
 * may run in a copy or in the memory of a threaded caller, and libc's
 * wrappers would broadcast the change to the caller's threads.  A change of
 * credentials clears the parent-death signal: it is set again, and a parent
 * gone meanwhile ends this process as it would have. */
static void switch_ids(unsigned int uid, unsigned int gid)
{
    int deathsig = 0;
    CHECK(prctl(PR_GET_PDEATHSIG, &deathsig, 0, 0, 0), "prctl(PR_GET_PDEATHSIG)", NULL);
    pid_t parent = getppid();
    CHECK(syscall(SYS_setgroups, 0, NULL), "setgroups", NULL);
    CHECK(syscall(SYS_setresgid, gid, gid, gid), "setresgid", NULL);
    CHECK(syscall(SYS_setresuid, uid, uid, uid), "setresuid", NULL);
    if (deathsig != 0) {
        CHECK(prctl(PR_SET_PDEATHSIG, deathsig, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)", NULL);
        if (getppid() != parent)
            _exit(125);
    }
}

void iso_load_seccomp(const void *bpf, size_t len)
{
    struct sock_fprog prog = {.len = (unsigned short)len, .filter = (struct sock_filter *)bpf};
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0), "seccomp(SECCOMP_SET_MODE_FILTER)", NULL);
}

void iso_default_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL); /* EINVAL for the libc-reserved ones: harmless */
}

/* Move the three stdio fds into place even when they collide with 0-2. */
static void setup_stdio(const int stdio[3])
{
    int tmp[3];
    for (int i = 0; i < 3; i++) {
        tmp[i] = fcntl(stdio[i], F_DUPFD_CLOEXEC, 3);
        CHECK(tmp[i], "dup stdio", NULL);
    }
    for (int i = 0; i < 3; i++) {
        CHECK(dup2(tmp[i], i), "dup2 stdio", NULL);
        close(tmp[i]);
    }
}

void iso_exec_command(const struct iso_exec *e)
{
    if (!e->handlers_default)
        iso_default_handlers();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0 && errno != EPERM)
        iso_die("setsid", NULL, errno);
    if (e->die_with_parent)
        CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)", NULL);
    setup_stdio(e->stdio);
    for (int i = 0; i < e->n_rlimits; i++) {
        struct rlimit rl = {.rlim_cur = e->rlimits[i].soft, .rlim_max = e->rlimits[i].hard};
        CHECK(setrlimit(e->rlimits[i].resource, &rl), "setrlimit", NULL);
    }
    /* The ids change before chdir, so the new ones must be able to enter cwd;
     * the bounding set before them (CAP_SETPCAP goes with uid 0). */
    if (e->drop_caps_upto >= 0)
        iso_drop_bounding_set(e->drop_caps_upto);
    if (e->set_ids)
        switch_ids(e->uid, e->gid);
    CHECK(chdir(e->cwd), "chdir", e->cwd);
    if (e->drop_caps_upto >= 0 || e->clear_held_caps)
        iso_clear_capabilities();
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)", NULL);
    if (e->landlock_fd >= 0) {
        CHECK(syscall(SYS_landlock_restrict_self, e->landlock_fd, 0), "landlock_restrict_self", NULL);
        close(e->landlock_fd);
    }
    /* Every descriptor but 0-2 closes at execve (the error pipe included). */
    CHECK(syscall(SYS_close_range, 3, ~0U, ISO_CLOSE_RANGE_CLOEXEC), "close_range", NULL);
    if (e->bpf != NULL)
        iso_load_seccomp(e->bpf, e->bpf_len);
    execve(e->exe, (char *const *)e->argv, (char *const *)e->envp);
    iso_die("execve", e->exe, errno);
}
