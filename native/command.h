/* The command message a sandbox's init receives (init.c), parsed.  Its
 * format (struct iso_command_msg, struct iso_command_head, the ISO_COMMAND_*
 * and ISO_CMD_* values) is in sandbox.h: the caller's Python packs and sends
 * it (isolation/backends/native/message.py).  Include "sandbox.h" first.
 */
#ifndef ISOLATION_COMMAND_H
#define ISOLATION_COMMAND_H

#include <stddef.h>

#include "worker.h"

/* How many entries the `strings` array of iso_unpack_command needs, or 0 if
 * the payload is malformed. */
size_t iso_command_strings(const char *buf, size_t len);
/* Fills `e` (argv and envp point into `strings`, the rest into `buf`); -1 if malformed. */
int iso_unpack_command(const char *buf, size_t len, struct iso_exec *e, const char **strings, size_t n_strings);

#endif
