/* isolation-egress: run first inside a sandbox with an egress allowlist.
 *
 *   listen SOCKET PORT -- CMD [ARG...]
 *
 * Makes a listening TCP socket on 127.0.0.1:PORT in the sandbox's own network
 * namespace, sends it over the unix socket SOCKET to the caller (SCM_RIGHTS, one
 * message "L"), waits for the caller's one-byte ack, closes both and executes
 * CMD. The caller's egress proxy accepts on that socket: a socket keeps the
 * namespace it was made in, so the caller never enters the sandbox and the
 * sandbox gets no route out. Each step is checked; a failure names the step and
 * exits 125 before CMD runs (the caller then sees a run that did not start).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "syscalls.h" /* the numbers libc may lack, defined once (none needed here yet) */

static void die(const char *step, const char *what) {
    fprintf(stderr, "isolation: egress setup failed at %s (%s): %s\n", step, what, strerror(errno));
    _exit(125);
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: %s SOCKET PORT -- CMD [ARG...]\n", argv[0]);
        return 125;
    }
    char *end = NULL;
    long port = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || port <= 0 || port > 65535) {
        errno = EINVAL;
        die("port", argv[2]);
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket", "AF_INET");
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0)
        die("bind", argv[2]);
    if (listen(lfd, 128) < 0)
        die("listen", argv[2]);

    int ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ufd < 0)
        die("socket", "AF_UNIX");
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(argv[1]) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        die("connect", argv[1]);
    }
    strcpy(sun.sun_path, argv[1]);
    if (connect(ufd, (struct sockaddr *)&sun, sizeof sun) < 0)
        die("connect", argv[1]);

    char tag = 'L';
    struct iovec iov = {.iov_base = &tag, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &lfd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(ufd, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        die("sendmsg", argv[1]);
    char ack = 0;
    do
        n = read(ufd, &ack, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1 || ack != 'k') {
        if (n >= 0)
            errno = ECONNRESET;
        die("ack", argv[1]);
    }
    close(ufd);
    close(lfd);

    execvp(argv[4], argv + 4);
    int err = errno;
    fprintf(stderr, "isolation: cannot execute %s: %s\n", argv[4], strerror(err));
    return err == ENOENT ? 127 : 126;
}
