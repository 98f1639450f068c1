/* See report.h. */

#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "sandbox.h"
#include "report.h"
#include "syscalls.h"

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

/* ---- the caller's side ------------------------------------------------------ */

void iso_fail(struct iso_error *error, const char *step, const char *path, int err)
{
    iso_copy_str(error->step, sizeof error->step, step);
    iso_copy_str(error->path, sizeof error->path, path);
    error->err = err;
}

/* Read the setup report on the error pipe until EOF.  0: EOF, nothing
 * reported (every process that held the pipe executed or exited); -1: a
 * (step, path, errno) record, or a torn one, is in *error. */
int iso_read_report(int fd, struct iso_error *error)
{
    struct iso_error rec;
    size_t got = 0;
    while (got < sizeof rec) {
        ssize_t n = read(fd, (char *)&rec + got, sizeof rec - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == 0)
        return 0;
    if (got == sizeof rec) {
        *error = rec;
        error->step[sizeof rec.step - 1] = '\0';
        error->path[sizeof rec.path - 1] = '\0';
    } else {
        iso_fail(error, "read setup report", NULL, EIO);
    }
    return -1;
}
