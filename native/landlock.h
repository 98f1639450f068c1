/* The Landlock ABI's structs and rule types (not all in Debian 12's headers).
 * The access-right values live in isolation/landlock.py only: they come in
 * through struct iso_config. */
#ifndef ISOLATION_LANDLOCK_H
#define ISOLATION_LANDLOCK_H

#include <stdint.h>

struct iso_landlock_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};

struct iso_landlock_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

#define ISO_LANDLOCK_RULE_PATH_BENEATH 1

struct iso_landlock_net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
} __attribute__((packed));

#define ISO_LANDLOCK_RULE_NET_PORT 2
/* Rights that make sense on a file (the rest only on directories). */
#define ISO_LANDLOCK_FILE_RIGHTS ((1ULL << 0) | (1ULL << 1) | (1ULL << 2) | (1ULL << 14) | (1ULL << 15))

#endif
