/* System call numbers (and the one flag value) the C needs that libc's
 * headers may lack: every C file includes this, so each is defined once.
 *
 * Why: Debian 12's glibc headers predate some of these calls (landlock_*,
 * mount_setattr and others arrived in kernels newer than the headers
 * distributions froze), and glibc has no wrapper for most of them, so they
 * are made with syscall(2).  Where the headers have a number, theirs is used.
 *
 * The fallbacks are the numbers of the kernel's unified system call table
 * (every call from 424 on): the same on x86_64 and aarch64, the two
 * architectures we build for.  Elsewhere (alpha, ia64 and mips add an offset)
 * a fallback is not trusted: a use without libc's own number fails to build.
 *
 * Only macros: bwrap_exec.c includes this in a freestanding build too.
 */
#ifndef ISOLATION_SYSCALLS_H
#define ISOLATION_SYSCALLS_H

#include <sys/syscall.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define ISO_NR(n) (n)
#else
#define ISO_NR(n) iso_syscall_number_unknown_on_this_architecture
#endif

#ifndef SYS_open_tree
#define SYS_open_tree ISO_NR(428) /* Linux 5.2 */
#endif
#ifndef SYS_move_mount
#define SYS_move_mount ISO_NR(429) /* Linux 5.2 */
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open ISO_NR(434) /* Linux 5.3 */
#endif
#ifndef SYS_close_range
#define SYS_close_range ISO_NR(436) /* Linux 5.9 */
#endif
#ifndef SYS_openat2
#define SYS_openat2 ISO_NR(437) /* Linux 5.6 */
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr ISO_NR(442) /* Linux 5.12 */
#endif
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset ISO_NR(444) /* Linux 5.13 */
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule ISO_NR(445)
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self ISO_NR(446)
#endif

/* close_range(2)'s flag (Linux 5.11), not in every linux/close_range.h. */
#define ISO_CLOSE_RANGE_CLOEXEC 4

#endif
