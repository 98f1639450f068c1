/* The (step, path, errno) error report: written by a sandbox's processes
 * before their execve (iso_die, CHECK), read by the caller (iso_read_report).
 * Include "sandbox.h" first.
 */
#ifndef ISOLATION_REPORT_H
#define ISOLATION_REPORT_H

#include <stddef.h>

/* Where iso_die() reports: the caller's error pipe.  Thread-local on purpose:
 * spawn.c's children run on the calling thread's TLS (clone with CLONE_VM
 * shares it), so concurrent spawns from other threads never see each other's. */
extern __thread int iso_err_fd;

void iso_copy_str(char *dst, size_t size, const char *src);
size_t iso_fmt_uint(char *buf, unsigned int v);

/* Report (step, path, errno) on iso_err_fd and end this process (exit 125). */
void __attribute__((noreturn)) iso_die(const char *step, const char *path, int err);

#define CHECK(expr, step, path)                   \
    do {                                          \
        if ((expr) < 0)                           \
            iso_die((step), (path), errno);       \
    } while (0)

/* The caller's side: fill `error` with (step, path, err). */
void iso_fail(struct iso_error *error, const char *step, const char *path, int err);

/* Read the setup report on the error pipe until EOF.  0: EOF, nothing
 * reported (every process that held the pipe executed or exited); -1: a
 * (step, path, errno) record, or a torn one, is in *error. */
int iso_read_report(int fd, struct iso_error *error);

#endif
