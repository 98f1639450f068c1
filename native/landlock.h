/* The Landlock ABI's structs, rule types and flags, for the C that builds a
 * ruleset (spawn.c) and ask for the ABI (probe.c): not all are in Debian
 * 12's headers.  The access-right values live in isolation/landlock.py
 * only; they come in through struct iso_config (landlock_fs, landlock_net,
 * landlock_scoped, landlock_file_rights, each rule's access). */
#ifndef ISOLATION_LANDLOCK_H
#define ISOLATION_LANDLOCK_H

#include <stdint.h>

/* landlock_add_rule's rule types */
#define ISO_LANDLOCK_RULE_PATH_BENEATH 1
#define ISO_LANDLOCK_RULE_NET_PORT 2 /* ABI 4 */

/* landlock_create_ruleset's flag: return the ABI version instead */
#define ISO_LANDLOCK_CREATE_RULESET_VERSION 1

struct iso_landlock_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};

struct iso_landlock_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct iso_landlock_net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
} __attribute__((packed));

#endif
