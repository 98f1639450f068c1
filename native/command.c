/* See command.h. */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "sandbox.h"
#include "command.h"
#include "report.h"
#include "syscalls.h"

/* ---- the payload's format (both sides) ------------------------------------------ */

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

/* ---- the caller's side ------------------------------------------------------ */

/* The payload of a command too large to travel inline: a memfd holding it,
 * sealed, or -1 with *error set. */
static int payload_memfd(const char *buf, size_t len, struct iso_error *error)
{
    int memfd = memfd_create("isolation-command", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd < 0) {
        iso_fail(error, "memfd_create", NULL, errno);
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(memfd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            iso_fail(error, "write command", NULL, n < 0 ? errno : EIO);
            close(memfd);
            return -1;
        }
        done += (size_t)n;
    }
    if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        iso_fail(error, "seal command", NULL, errno);
        close(memfd);
        return -1;
    }
    return memfd;
}

/* Queue the command of `cfg` for a sandbox's init on `control_fd` (command.h),
 * with stdio, the write ends of the error and status pipes, and `cgroup_fd`
 * when >= 0.  No cap of our own on the payload: execve, in the worker,
 * judges argv and envp.  0, or -1 with *error set. */
int iso_send_command(int control_fd, const struct iso_config *cfg, int err_w, int status_w, int cgroup_fd,
                     struct iso_error *error)
{
    struct iso_exec e = {
        .argv = cfg->argv,
        .envp = cfg->envp,
        .exe = cfg->exe,
        .cwd = cfg->cwd,
        .rlimits = cfg->rlimits,
        .n_rlimits = cfg->n_rlimits,
        .bpf = (cfg->flags & ISO_F_SECCOMP) ? cfg->bpf : NULL,
        .bpf_len = cfg->bpf_len,
    };
    struct iso_command_head head;
    size_t len = iso_command_size(&e, &head);
    char *buf = malloc(len); /* the caller's side: allocating is fine here */
    if (buf == NULL) {
        iso_fail(error, "malloc", NULL, ENOMEM);
        return -1;
    }
    iso_pack_command(&e, &head, buf);
    /* Inline unless too large for the message; a socket whose send buffer
     * cannot take it (a host with a tiny net.core.wmem_default) gets the
     * memfd too. */
    int memfd = -1;
    if (len > ISO_COMMAND_INLINE && (memfd = payload_memfd(buf, len, error)) < 0) {
        free(buf);
        return -1;
    }
    ssize_t sent;
    size_t want;
    for (;;) {
        struct iso_command_msg msg_head = {.magic = ISO_COMMAND_MAGIC, .flags = 0, .payload_len = len};
        int fds[ISO_COMMAND_FDS] = {cfg->stdio[0], cfg->stdio[1], cfg->stdio[2], err_w, status_w};
        size_t nfds = 5;
        if (cgroup_fd >= 0) {
            msg_head.flags |= ISO_CMD_CGROUP;
            fds[nfds++] = cgroup_fd;
        }
        if (memfd >= 0) {
            msg_head.flags |= ISO_CMD_MEMFD;
            fds[nfds++] = memfd;
        }
        union {
            struct cmsghdr align;
            char bytes[CMSG_SPACE(sizeof(int) * ISO_COMMAND_FDS)];
        } control;
        memset(&control, 0, sizeof control);
        struct iovec iov[2] = {{.iov_base = &msg_head, .iov_len = sizeof msg_head},
                               {.iov_base = buf, .iov_len = len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = memfd >= 0 ? 1 : 2, .msg_control = control.bytes,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        want = sizeof msg_head + (memfd >= 0 ? 0 : len);
        do
            sent = sendmsg(control_fd, &msg, MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        if (sent < 0 && errno == EMSGSIZE && memfd < 0) {
            if ((memfd = payload_memfd(buf, len, error)) < 0) {
                free(buf);
                return -1;
            }
            continue;
        }
        break;
    }
    int err = errno;
    free(buf);
    if (memfd >= 0)
        close(memfd);
    if (sent != (ssize_t)want) {
        iso_fail(error, "send command", NULL, sent < 0 ? err : EIO);
        return -1;
    }
    return 0;
}

/* ---- running a command in a prepared sandbox --------------------------------- */

int iso_run_prepared(int control_fd, const struct iso_config *cfg, struct iso_started *out)
{
    int err_pipe[2] = {-1, -1}, status_pipe[2] = {-1, -1};
    memset(out, 0, sizeof *out);
    out->pid = -1;
    out->status_fd = -1;
    if (pipe2(err_pipe, O_CLOEXEC) < 0 || pipe2(status_pipe, O_CLOEXEC) < 0) {
        iso_fail(&out->error, "pipe2", NULL, errno);
        goto fail;
    }
    if (iso_send_command(control_fd, cfg, err_pipe[1], status_pipe[1], cfg->cgroup_procs_fd, &out->error) < 0)
        goto fail;
    close(err_pipe[1]);
    err_pipe[1] = -1;
    close(status_pipe[1]);
    status_pipe[1] = -1;

    /* EOF: the command was executed (or the sandbox died, which its exit status tells). */
    if (iso_read_report(err_pipe[0], &out->error) != 0)
        goto fail;
    close(err_pipe[0]);
    out->status_fd = status_pipe[0];
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
        if (status_pipe[i] >= 0)
            close(status_pipe[i]);
    }
    return -1;
}
