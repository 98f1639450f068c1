/* What a sandbox's command process does between its fork and its execve,
 * shared by the caller-side choreography (spawn.c) and by a sandbox's init
 * (init.c).  Only async-signal-safe work: spawn.c runs it in a copy of a
 * threaded process.
 */
#ifndef ISOLATION_WORKER_H
#define ISOLATION_WORKER_H

#include <stddef.h>
#include <stdint.h>

/* Include "sandbox.h" first (it has no include guard: cffi parses it). */

#include "report.h"

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
    const void *bpf;       /* seccomp program, installed last; NULL: none (or, under
                            * isolation-init, the sandbox's own filter is inherited) */
    size_t bpf_len;        /* in instructions */
};

/* Default signal handlers and an empty mask, a new session, stdio, rlimits,
 * cwd, the bounding set, ids, the other capability sets, no_new_privs, Landlock, every other descriptor close-on-exec, seccomp
 * last, execve.  Never returns: a failure is reported with iso_die(). */
void __attribute__((noreturn)) iso_exec_command(const struct iso_exec *e);

/* Install the seccomp program `bpf` (`len` instructions, from libseccomp);
 * no_new_privs must be set. */
void iso_load_seccomp(const void *bpf, size_t len);

/* All five sets: the bounding set (needs CAP_SETPCAP), then the four others. */
void iso_drop_capabilities(int cap_last_cap);
void iso_drop_bounding_set(int cap_last_cap);
void iso_clear_capabilities(void);

/* Every signal disposition back to SIG_DFL (SIG_IGN survives execve). */
void iso_default_handlers(void);

#endif
