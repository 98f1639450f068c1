/* The sandbox's minimal root (mounts.c), built by the child in its own mount
 * namespace.  Include "sandbox.h" first. */
#ifndef ISOLATION_MOUNTS_H
#define ISOLATION_MOUNTS_H

/* Build the new root from cfg->mounts (in order), enter it with pivot_root
 * and make it read-only.  Never returns on failure: iso_die() reports. */
void iso_setup_mounts(const struct iso_config *cfg);

#endif
