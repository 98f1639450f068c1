/* The command message a sandbox's init receives (init.c): its format, both
 * sides' packing, and the caller's side that sends it (spawn.c on demand,
 * iso_run_prepared for a prepared sandbox).  Include "sandbox.h" first.
 */
#ifndef ISOLATION_COMMAND_H
#define ISOLATION_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "worker.h"

/* The message's format (struct iso_command_msg, struct iso_command_head, the
 * ISO_COMMAND_* and ISO_CMD_* values) is in sandbox.h: Python reads it too. */

/* The payload's size for `e` (fills *head). */
size_t iso_command_size(const struct iso_exec *e, struct iso_command_head *head);
/* Writes the payload (iso_command_size bytes) into `buf`. */
void iso_pack_command(const struct iso_exec *e, const struct iso_command_head *head, char *buf);
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
