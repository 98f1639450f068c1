/* isolation-exec: what bubblewrap executes in a bwrap sandbox, in place of the
 * command, to tell the caller whether the command was really executed.
 *
 * bubblewrap reports nothing between its set-up and the command's execve, and
 * its own failures (a namespace refused, a mount that fails) end with exit 1
 * like any command.  This program runs only once bubblewrap has finished its
 * set-up, so its first byte on the report pipe means "set-up done"; the pipe is
 * close-on-exec, so end-of-file after that byte means the command's execve
 * succeeded, and a failure record means it did not.  No byte at all: bubblewrap
 * failed before.  (bubblewrap's monitor and its pid 1 close inherited
 * descriptors, so only this process holds the write end.)
 *
 * It also gives the command the caller's stderr: bubblewrap itself writes to a
 * pipe the caller reads, so its error message reaches the caller's exception.
 *
 * Usage (internal, built static by setup.py, executed as /proc/self/fd/SELF_FD):
 *   isolation-exec REPORT_FD STDERR_FD SELF_FD COMMAND [ARG...]
 *
 * Report: 'R' once reached; on failure then 'E', the errno (4 bytes, host
 * order) and the step's name.  Exit status 127 after a failure.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int report_fd = -1;

static void write_all(const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(report_fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the caller is gone: nobody to tell */
        p += n;
        len -= (size_t)n;
    }
}

static void __attribute__((noreturn)) fail(const char *step, int err)
{
    char rec[1 + sizeof(int32_t) + 16];
    int32_t e = err;
    size_t n = strnlen(step, 16);
    rec[0] = 'E';
    memcpy(rec + 1, &e, sizeof e);
    memcpy(rec + 1 + sizeof e, step, n);
    write_all(rec, 1 + sizeof e + n);
    _exit(127);
}

static int parse_fd(const char *s)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > INT_MAX)
        return -1;
    return (int)v;
}

int main(int argc, char **argv)
{
    int err_fd, self_fd;

    if (argc < 5)
        return 127;
    report_fd = parse_fd(argv[1]);
    err_fd = parse_fd(argv[2]);
    self_fd = parse_fd(argv[3]);
    if (report_fd < 3 || err_fd < 3 || self_fd < 3)
        return 127;
    if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0)
        return 127; /* no report channel: the caller sees no byte and refuses */
    write_all("R", 1);
    if (close(self_fd) < 0)
        fail("close", errno);
    if (dup2(err_fd, 2) < 0)
        fail("dup2", errno);
    if (close(err_fd) < 0)
        fail("close", errno);
    execvp(argv[4], argv + 4);
    fail("execve", errno);
}
