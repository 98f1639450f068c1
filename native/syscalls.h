/* System call numbers the C needs that libc's headers may lack.
 *
 * Debian 12's glibc headers predate some of these calls, so each is defined
 * here, once, when <sys/syscall.h> does not.
 */
#ifndef ISOLATION_SYSCALLS_H
#define ISOLATION_SYSCALLS_H

#include <sys/syscall.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define ISO_SYS_landlock_create_ruleset 444
#define ISO_SYS_landlock_add_rule 445
#define ISO_SYS_landlock_restrict_self 446
#define ISO_CLOSE_RANGE_CLOEXEC 4

#endif
