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
 * Usage (internal, executed by bubblewrap as /proc/self/fd/SELF_FD):
 *   isolation-exec REPORT_FD STDERR_FD SELF_FD PATH ARGV0 [ARG...]
 * PATH is the command as resolved inside the sandbox (as the native backend
 * executes it): no search here.
 *
 * Report: 'R' once reached; on failure then 'E', the errno (4 bytes, host
 * order) and the step's name.  Exit status 127 after a failure.
 *
 * It runs before every bwrap command, so it avoids libc where it can
 * (ISO_NOLIBC, set by setup.py on x86-64 and arm64): a static glibc's start-up
 * (CPU feature probing, TLS, IRELATIVE relocations) costs more than the rest of
 * this program's life.  Elsewhere it is an ordinary static program.
 */

#include <linux/fcntl.h>

#include "syscalls.h" /* __NR_* (asm/unistd.h); only macros, so fine without libc */

#ifdef ISO_NOLIBC

#if defined(__x86_64__)
static long sys3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start_c\n  hlt\n");
#elif defined(__aarch64__)
static long sys3(long n, long a, long b, long c)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n  mov x0, sp\n  bl start_c\n  brk #0\n");
#else
#error "ISO_NOLIBC: no system call stub for this architecture (build without it)"
#endif

#else /* with libc */

#include <errno.h>
#include <unistd.h>
static long sys3(long n, long a, long b, long c)
{
    long ret = syscall(n, a, b, c);
    return ret < 0 ? -errno : ret;
}

#endif

static int report_fd = -1;

static void __attribute__((noreturn)) leave(int status)
{
    for (;;)
        sys3(__NR_exit_group, status, 0, 0);
}

static void put(const void *buf, long len)
{
    const char *p = buf;
    while (len > 0) {
        long n = sys3(__NR_write, report_fd, (long)p, len);
        if (n == -4) /* EINTR */
            continue;
        if (n <= 0)
            return; /* the caller is gone: nobody to tell */
        p += n;
        len -= n;
    }
}

/* The failure record: 'E', errno, step name (a string literal). */
#define FAIL(step, neg_errno)                  \
    do {                                       \
        int e_ = (int)-(neg_errno);            \
        put("E", 1);                           \
        put(&e_, sizeof e_);                   \
        put((step), (long)sizeof(step) - 1);   \
        leave(127);                            \
    } while (0)

static int parse_fd(const char *s)
{
    long v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1000000)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return (int)v;
}

static int run(int argc, char **argv, char **envp)
{
    int err_fd, self_fd;
    long r;

    if (argc < 6)
        return 127;
    report_fd = parse_fd(argv[1]);
    err_fd = parse_fd(argv[2]);
    self_fd = parse_fd(argv[3]);
    if (report_fd < 3 || err_fd < 3 || self_fd < 3)
        return 127;
    if (sys3(__NR_fcntl, report_fd, F_SETFD, FD_CLOEXEC) < 0)
        return 127; /* no report channel: the caller sees no byte and refuses */
    put("R", 1);
    if ((r = sys3(__NR_close, self_fd, 0, 0)) < 0)
        FAIL("close", r);
    if ((r = sys3(__NR_dup3, err_fd, 2, 0)) < 0)
        FAIL("dup2", r);
    if ((r = sys3(__NR_close, err_fd, 0, 0)) < 0)
        FAIL("close", r);
    r = sys3(__NR_execve, (long)argv[4], (long)(argv + 5), (long)envp);
    FAIL("execve", r);
}

#ifdef ISO_NOLIBC
void __attribute__((noreturn, used)) start_c(long *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    leave(run(argc, argv, argv + argc + 1));
}
#else
extern char **environ;
int main(int argc, char **argv)
{
    return run(argc, argv, environ);
}
#endif
