/* What a sandbox's command process does between its fork and its execve,
 * shared by the caller-side choreography (sandbox.c) and by a prepared
 * sandbox's init (init.c), plus the (step, path, errno) error report both use.
 * Only async-signal-safe work: sandbox.c runs it in a copy of a threaded process.
 */
#ifndef ISOLATION_WORKER_H
#define ISOLATION_WORKER_H

#include <stddef.h>
#include <stdint.h>

/* Include "sandbox.h" first (it has no include guard: cffi parses it). */

/* Where iso_die() reports: the caller's error pipe.  Thread-local on purpose:
 * sandbox.c's children run on the calling thread's TLS (clone with CLONE_VM
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

/* The command and the per-process restrictions applied right before it runs. */
struct iso_exec {
    const char *const *argv;
    const char *const *envp;
    const char *exe;
    const char *cwd;
    int stdio[3];
    const struct iso_rlimit *rlimits;
    int n_rlimits;
    int handlers_default;  /* every disposition is SIG_DFL already (else: reset them) */
    int die_with_parent;   /* PR_SET_PDEATHSIG(SIGKILL) */
    int drop_caps_upto;    /* >= 0: drop every capability (cap_last_cap) after the rlimits */
    int clear_held_caps;   /* empty the effective, permitted, inheritable and ambient sets */
    int set_ids;           /* become uid/gid with no supplementary groups (after the bounding set goes) */
    unsigned int uid;
    unsigned int gid;
    int landlock_fd;       /* >= 0: a Landlock ruleset to restrict this process with */
    const void *bpf;       /* seccomp program, installed last; NULL: none */
    size_t bpf_len;        /* in instructions */
};

/* Default signal handlers and an empty mask, a new session, stdio, rlimits,
 * cwd, the bounding set, ids, the other capability sets, no_new_privs, Landlock, every other descriptor close-on-exec, seccomp
 * last, execve.  Never returns: a failure is reported with iso_die(). */
void __attribute__((noreturn)) iso_exec_command(const struct iso_exec *e);

/* All five sets: the bounding set (needs CAP_SETPCAP), then the four others. */
void iso_drop_capabilities(int cap_last_cap);
void iso_drop_bounding_set(int cap_last_cap);
void iso_clear_capabilities(void);

/* Every signal disposition back to SIG_DFL (SIG_IGN survives execve). */
void iso_default_handlers(void);

/* The command message itself (struct iso_command_msg, the payload layout) is
 * declared in sandbox.h: the caller's Python packs it, init.c parses it. */

/* The payload's size for `e` (fills *head). */
size_t iso_command_size(const struct iso_exec *e, struct iso_command_head *head);
/* Writes the payload (iso_command_size bytes) into `buf`. */
void iso_pack_command(const struct iso_exec *e, const struct iso_command_head *head, char *buf);
/* How many entries the `strings` array of iso_unpack_command needs, or 0 if
 * the payload is malformed. */
size_t iso_command_strings(const char *buf, size_t len);
/* Fills `e` (argv and envp point into `strings`, the rest into `buf`); -1 if malformed. */
int iso_unpack_command(const char *buf, size_t len, struct iso_exec *e, const char **strings, size_t n_strings);

#endif
