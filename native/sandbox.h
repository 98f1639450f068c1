/* The interface between isolation/backends/native/ and the C (spawn.c and
 * the files it uses: see docs/native.md).
 *
 * Python resolves the policy into this flat description (every path, every
 * Landlock mask, the seccomp program); C only performs it between clone and
 * execve.  This file is parsed by cffi's cdef, so it holds plain declarations
 * only: no #include, no macros with expressions.
 */

/* Mount kinds, applied in array order inside the new root. */
#define ISO_MOUNT_RO_BIND 1
#define ISO_MOUNT_RW_BIND 2
#define ISO_MOUNT_TMPFS 3
#define ISO_MOUNT_PROC 4
#define ISO_MOUNT_DEV 5
#define ISO_MOUNT_SYMLINK 6
#define ISO_MOUNT_FILE 7
#define ISO_MOUNT_MASK 8   /* an empty mode-0000 file, read-only, over an existing target (skipped if none) */
/* Parts, right after the ISO_MOUNT_PROC or ISO_MOUNT_DEV they are built into;
 * each target is an entry directly in that parent's target: */
#define ISO_MOUNT_PROC_RO 9  /* that /proc's entry made read-only (skipped if the kernel has none) */
#define ISO_MOUNT_DEVICE 10  /* the host's device node `source` bound there, read-only */

/* iso_config.flags */
#define ISO_F_USERNS 1     /* new user namespace with the maps below */
#define ISO_F_MOUNTNS 2    /* new mount namespace, minimal root, pivot_root */
#define ISO_F_PIDNS 4      /* new pid namespace with our init as pid 1 */
#define ISO_F_NETNS 8      /* new network namespace, loopback up */
#define ISO_F_IPCNS 16
#define ISO_F_UTSNS 32
#define ISO_F_CGROUPNS 64
#define ISO_F_LANDLOCK 128
#define ISO_F_SECCOMP 256
#define ISO_F_CAPS 512     /* drop every capability (all five sets) */
#define ISO_F_PREPARED 1024 /* build the sandbox only: its init waits on control_fd for the command
                               (required with ISO_F_PIDNS) */
/* The host layout (no user namespace): */
#define ISO_F_HOST_IDS 65536   /* become uid_inside/gid_inside, no supplementary groups (a root caller) */
#define ISO_F_HELD_CAPS 131072 /* empty the four capability sets a process may lower itself (not the bounding set) */

struct iso_mount {
    int kind;
    const char *source;   /* host path (binds, device) or link text (symlink) */
    const char *target;   /* absolute path inside the sandbox */
    const char *data;     /* file content (ISO_MOUNT_FILE) */
    size_t data_len;
    uint64_t size;        /* ISO_MOUNT_TMPFS, ISO_MOUNT_DEV (its /dev/shm): tmpfs bound in bytes, > 0 */
    int max_ptys;         /* ISO_MOUNT_DEV: its devpts instance's max=; 0: no devpts, no /dev/ptmx */
};

struct iso_rule {
    const char *path;     /* path inside the sandbox (after pivot_root) */
    uint64_t access;      /* LANDLOCK_ACCESS_FS_* allowed beneath it */
};

struct iso_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

struct iso_config {
    const char *const *argv;
    const char *const *envp;
    const char *exe;          /* absolute path of argv[0] inside the sandbox */
    const char *cwd;
    const char *hostname;
    int flags;
    int stdio[3];
    unsigned int uid_inside;
    unsigned int gid_inside;
    unsigned int uid_outside;
    unsigned int gid_outside;
    const struct iso_mount *mounts;
    int n_mounts;
    int *source_fds;          /* n_mounts ints: the bind sources opened by the child (O_PATH) */
    int landlock_attr_size;   /* 8, 16 or 24: which ruleset fields the ABI knows */
    uint64_t landlock_fs;     /* handled_access_fs */
    uint64_t landlock_file_rights; /* the rights a rule may grant on a non-directory (isolation/landlock.py) */
    uint64_t landlock_net;    /* handled_access_net (0: network not restricted) */
    uint64_t landlock_scoped;
    int landlock_port;        /* > 0: the one TCP port bind/connect stay allowed on (egress proxy) */
    const struct iso_rule *rules;
    int n_rules;
    const void *bpf;          /* struct sock_filter[] from libseccomp */
    size_t bpf_len;           /* in instructions */
    const struct iso_rlimit *rlimits;
    int n_rlimits;
    int cap_last_cap;
    int init_fd;              /* isolation-init, opened by the caller (pid namespace only) */
    int cgroup_procs_fd;      /* -1, or a cgroup's cgroup.procs the sandbox joins first */
    int control_fd;           /* ISO_F_PREPARED: the sandbox's end of a SOCK_SEQPACKET pair */
};

struct iso_error {
    char step[48];
    char path[1024];
    int err;
};

/* What isolation-init writes on the status pipe once the sandbox is empty. */
struct iso_report {
    uint32_t status;      /* the command's wait status */
    uint32_t reserved;
    uint64_t utime_us;    /* of every process init reaped */
    uint64_t stime_us;
    uint64_t maxrss_kib;  /* the largest of them */
};

struct iso_started {
    int pid;          /* our init (pid 1 inside), or the command itself without a pid namespace */
    int status_fd;    /* read end: init writes a struct iso_report */
    struct iso_error error;
};

/* A command for a sandbox's init, as one SOCK_SEQPACKET message: a struct
 * iso_command_msg, then the payload (a head, the rlimits, then exe, cwd,
 * argv and envp as NUL-terminated strings; the seccomp filter is the
 * sandbox's, loaded before isolation-init, see spawn.c) when it
 * takes at most ISO_COMMAND_INLINE bytes, as nearly every command does.  A
 * larger payload travels as a memfd instead, sealed against writing, growing
 * and shrinking (init maps it: what it parses cannot change, nor fault), so
 * there is no cap of our own: execve judges argv and envp, with the
 * sandbox's RLIMIT_STACK, exactly as for any process.  Descriptors travel
 * alongside (SCM_RIGHTS): stdin, stdout, stderr, the error pipe, the status
 * pipe, then the cgroup.procs to join (ISO_CMD_CGROUP) and the payload's
 * memfd (ISO_CMD_MEMFD) when there are. */
#define ISO_COMMAND_INLINE 32768 /* 32 KiB */
#define ISO_COMMAND_FDS 7
#define ISO_COMMAND_MAGIC 0x69736f63 /* "isoc" */
#define ISO_CMD_CGROUP 1
#define ISO_CMD_MEMFD 2

struct iso_command_msg {
    uint32_t magic;
    uint32_t flags;       /* ISO_CMD_* */
    uint64_t payload_len;
};

struct iso_command_head {
    uint32_t n_argv;
    uint32_t n_envp;
    uint32_t n_rlimits;
    uint32_t zero;    /* 0: keeps the rlimits after it 8-byte aligned */
};

/* Build a sandbox.  With a pid namespace (ISO_F_PIDNS, which needs
 * ISO_F_PREPARED and cfg->control_fd) nothing is run: its isolation-init
 * waits on cfg->control_fd for the command the caller sends (message.py), so
 * pid 1 is isolation-init before the command exists.  Without one (the host
 * layout) the child restricts itself and executes the command.
 * 0: init is waiting, or the command was executed.
 * -1: setup failed, `out->error` says where; nothing of the sandbox is left. */
int iso_spawn(const struct iso_config *cfg, struct iso_started *out);

/* Host probes for isolation/userns.py (run in the caller, not after clone). */

/* Fork a child that tries unshare(CLONE_NEWUSER) and exits.  Returns its exit
 * code: 0 (it could), the errno it failed with (255 for none or a larger
 * one), or minus the signal that killed it.  When fork itself fails,
 * *fork_err is its errno (else 0) and the return value means nothing. */
int iso_probe_userns(int *fork_err);

/* seccomp(SECCOMP_GET_ACTION_AVAIL) for SECCOMP_RET_KILL_PROCESS: 0 when
 * seccomp filters answer here, else the errno (nothing is loaded). */
int iso_probe_seccomp(void);

/* The kernel's Landlock ABI version (> 0), or -errno when Landlock is
 * absent, disabled or refused. */
int iso_landlock_abi(void);
