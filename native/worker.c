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
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "sandbox.h"
#include "worker.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define ISO_SYS_landlock_restrict_self 446
#define ISO_CLOSE_RANGE_CLOEXEC 4

__thread int iso_err_fd = -1;

void iso_copy_str(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    if (src)
        for (; src[i] && i + 1 < size; i++)
            dst[i] = src[i];
    dst[i] = '\0';
}

size_t iso_fmt_uint(char *buf, unsigned int v)
{
    char tmp[16];
    size_t n = 0, i = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < sizeof tmp);
    while (n)
        buf[i++] = tmp[--n];
    return i;
}

void iso_die(const char *step, const char *path, int err)
{
    struct iso_error rec;
    memset(&rec, 0, sizeof rec);
    iso_copy_str(rec.step, sizeof rec.step, step);
    iso_copy_str(rec.path, sizeof rec.path, path);
    rec.err = err;
    if (iso_err_fd >= 0) {
        ssize_t n;
        do
            n = write(iso_err_fd, &rec, sizeof rec);
        while (n < 0 && errno == EINTR);
    }
    _exit(125);
}

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
        CHECK(syscall(ISO_SYS_landlock_restrict_self, e->landlock_fd, 0), "landlock_restrict_self", NULL);
        close(e->landlock_fd);
    }
    /* Every descriptor but 0-2 closes at execve (the error pipe included). */
    CHECK(syscall(SYS_close_range, 3, ~0U, ISO_CLOSE_RANGE_CLOEXEC), "close_range", NULL);
    if (e->bpf != NULL) {
        struct sock_fprog prog = {.len = (unsigned short)e->bpf_len, .filter = (struct sock_filter *)e->bpf};
        CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0), "seccomp(SECCOMP_SET_MODE_FILTER)", NULL);
    }
    execve(e->exe, (char *const *)e->argv, (char *const *)e->envp);
    iso_die("execve", e->exe, errno);
}

/* ---- the command sent to a sandbox's init (see worker.h) --------------------- */

size_t iso_command_size(const struct iso_exec *e, struct iso_command_head *head)
{
    head->n_argv = 0;
    head->n_envp = 0;
    head->n_rlimits = (uint32_t)e->n_rlimits;
    head->bpf_len = e->bpf ? (uint32_t)e->bpf_len : 0;
    size_t size = sizeof *head + sizeof *e->rlimits * head->n_rlimits + (size_t)head->bpf_len * 8;
    size += strlen(e->exe) + 1 + strlen(e->cwd) + 1;
    for (; e->argv[head->n_argv]; head->n_argv++)
        size += strlen(e->argv[head->n_argv]) + 1;
    for (; e->envp[head->n_envp]; head->n_envp++)
        size += strlen(e->envp[head->n_envp]) + 1;
    return size;
}

static char *put(char *at, const void *src, size_t len)
{
    memcpy(at, src, len);
    return at + len;
}

void iso_pack_command(const struct iso_exec *e, const struct iso_command_head *head, char *buf)
{
    char *at = put(buf, head, sizeof *head);
    at = put(at, e->rlimits, sizeof *e->rlimits * head->n_rlimits);
    at = put(at, e->bpf, (size_t)head->bpf_len * 8);
    at = put(at, e->exe, strlen(e->exe) + 1);
    at = put(at, e->cwd, strlen(e->cwd) + 1);
    for (uint32_t i = 0; i < head->n_argv; i++)
        at = put(at, e->argv[i], strlen(e->argv[i]) + 1);
    for (uint32_t i = 0; i < head->n_envp; i++)
        at = put(at, e->envp[i], strlen(e->envp[i]) + 1);
}

size_t iso_command_strings(const char *buf, size_t len)
{
    struct iso_command_head head;
    if (len < sizeof head)
        return 0;
    memcpy(&head, buf, sizeof head);
    size_t n = (size_t)head.n_argv + head.n_envp;
    if (head.n_argv == 0 || n > len) /* every string takes a byte at least */
        return 0;
    return n + 2;
}

int iso_unpack_command(const char *buf, size_t len, struct iso_exec *e, const char **strings, size_t n_strings)
{
    struct iso_command_head head;
    if (len < sizeof head)
        return -1;
    memcpy(&head, buf, sizeof head);
    size_t at = sizeof head;
    size_t fixed = sizeof *e->rlimits * (size_t)head.n_rlimits + (size_t)head.bpf_len * 8;
    if (head.n_rlimits > 64 || head.bpf_len > 4096 || fixed > len - at ||
        (size_t)head.n_argv + head.n_envp + 2 > n_strings || head.n_argv == 0)
        return -1;
    e->rlimits = (const struct iso_rlimit *)(buf + at); /* buf is page aligned, the head 16 bytes */
    e->n_rlimits = (int)head.n_rlimits;
    at += sizeof *e->rlimits * head.n_rlimits;
    e->bpf = head.bpf_len ? buf + at : NULL;
    e->bpf_len = head.bpf_len;
    at += (size_t)head.bpf_len * 8;
    size_t total = 2 + (size_t)head.n_argv + head.n_envp;
    for (size_t i = 0; i < total; i++) {
        const char *end = at < len ? memchr(buf + at, '\0', len - at) : NULL;
        if (end == NULL)
            return -1;
        if (i == 0)
            e->exe = buf + at;
        else if (i == 1)
            e->cwd = buf + at;
        else
            strings[i - 2 + (i - 2 >= head.n_argv ? 1 : 0)] = buf + at; /* argv, NULL, envp, NULL */
        at = (size_t)(end - buf) + 1;
    }
    strings[head.n_argv] = NULL;
    strings[head.n_argv + 1 + head.n_envp] = NULL;
    e->argv = strings;
    e->envp = strings + head.n_argv + 1;
    return at == len ? 0 : -1;
}
