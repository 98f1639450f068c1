/* The command message a sandbox's init receives (init.c): its format, both
 * sides' packing, and the caller's side that sends it (spawn.c on demand,
 * iso_run_prepared for a prepared sandbox).  Include "sandbox.h" first.
 */
#ifndef ISOLATION_COMMAND_H
#define ISOLATION_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "worker.h"

/* A command for a sandbox's init, as one SOCK_SEQPACKET message: a struct
 * iso_command_msg, then the payload (a head, the rlimits, the seccomp
 * program, then exe, cwd, argv and envp as NUL-terminated strings) when it
 * takes at most ISO_COMMAND_INLINE bytes, as nearly every command does.  A
 * larger payload travels as a memfd instead, sealed against writing, growing
 * and shrinking (init maps it: what it parses cannot change, nor fault), so
 * there is no cap of our own: execve judges argv and envp, with the
 * sandbox's RLIMIT_STACK, exactly as for any process.  Descriptors travel
 * alongside (SCM_RIGHTS): stdin, stdout, stderr, the error pipe, the status
 * pipe, then the cgroup.procs to join (ISO_CMD_CGROUP) and the payload's
 * memfd (ISO_CMD_MEMFD) when there are. */
#define ISO_COMMAND_INLINE (32 * 1024)
#define ISO_COMMAND_FDS 7
#define ISO_COMMAND_MAGIC 0x69736f63u /* "isoc" */
#define ISO_CMD_CGROUP 1
#define ISO_CMD_MEMFD 2

struct iso_command_msg {
    uint32_t magic;
    uint32_t flags;       /* ISO_CMD_* */
    uint64_t payload_len;
};

struct iso_prepared_head {
    uint32_t n_argv;
    uint32_t n_envp;
    uint32_t n_rlimits;
    uint32_t bpf_len; /* instructions; 0: no seccomp */
};

/* The payload's size for `e` (fills *head). */
size_t iso_command_size(const struct iso_exec *e, struct iso_prepared_head *head);
/* Writes the payload (iso_command_size bytes) into `buf`. */
void iso_pack_command(const struct iso_exec *e, const struct iso_prepared_head *head, char *buf);
/* How many entries the `strings` array of iso_unpack_command needs, or 0 if
 * the payload is malformed. */
size_t iso_command_strings(const char *buf, size_t len);
/* Fills `e` (argv and envp point into `strings`, the rest into `buf`); -1 if malformed. */
int iso_unpack_command(const char *buf, size_t len, struct iso_exec *e, const char **strings, size_t n_strings);

/* Queue the command of `cfg` for a sandbox's init on `control_fd`, with
 * stdio, the write ends of the error and status pipes, and `cgroup_fd` when
 * >= 0.  No cap of our own on the payload: execve, in the worker, judges
 * argv and envp.  0, or -1 with *error set. */
int iso_send_command(int control_fd, const struct iso_config *cfg, int err_w, int status_w, int cgroup_fd,
                     struct iso_error *error);

#endif
