/* See command.h. */

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sandbox.h"
#include "command.h"
#include "syscalls.h"

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
    size_t fixed = sizeof *e->rlimits * (size_t)head.n_rlimits;
    if (head.n_rlimits > 64 || head.zero != 0 || fixed > len - at ||
        (size_t)head.n_argv + head.n_envp + 2 > n_strings || head.n_argv == 0)
        return -1;
    e->rlimits = (const struct iso_rlimit *)(buf + at); /* buf is page aligned, the head 16 bytes */
    e->n_rlimits = (int)head.n_rlimits;
    at += sizeof *e->rlimits * head.n_rlimits;
    e->bpf = NULL; /* the sandbox's filter holds init already, and so the worker */
    e->bpf_len = 0;
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
