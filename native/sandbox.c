/* The native sandbox: everything that must happen between clone and execve.
 *
 * One sequence of steps, each checked; a failure is reported to the parent as
 * (step, path, errno) through a close-on-exec pipe and the child exits.  The
 * parent learns "the command is running" from EOF on that pipe (execve closed
 * it), so setup errors are never silent and never hang.
 *
 * Process layout with a pid namespace:
 *   caller --clone(namespaces)--> init (pid 1) --execve--> isolation-init
 *          --fork--> worker --execve--> command
 * The future init builds the mount tree, network and hostname
 * (namespace-wide state), drops its capabilities, builds the Landlock
 * ruleset and executes isolation-init, which takes the command from a
 * control socket (queued by the caller before the clone on demand; sent
 * later to a sandbox prepared ahead of demand) and only then forks the
 * worker: no process of the sandbox ever sees pid 1 in the caller's memory.
 * The worker applies the per-process restrictions (session, rlimits,
 * Landlock, seccomp last) and executes the command.  When the worker ends,
 * init reports its wait status and exits, and the kernel kills whatever is
 * left in the pid namespace.  Without a pid namespace (the best-effort host
 * layout) the child restricts itself and executes the command: no init.
 *
 * Nothing here allocates memory after clone: the caller is a multi-threaded
 * Python process, so only async-signal-safe work is done in the children.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "sandbox.h"
#include "worker.h"

/* ---- kernel interfaces not (or not fully) in Debian 12's headers ---------- */

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

#define ISO_OPEN_TREE_CLONE 1
#define ISO_OPEN_TREE_CLOEXEC O_CLOEXEC
#define ISO_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define ISO_MOVE_MOUNT_T_EMPTY_PATH 0x40
#define ISO_MOUNT_ATTR_RDONLY 0x1
#define ISO_MOUNT_ATTR_NOSUID 0x2
#define ISO_MOUNT_ATTR_NODEV 0x4
#define ISO_MOUNT_ATTR_NOEXEC 0x8
#define ISO_RESOLVE_NO_MAGICLINKS 0x02
#define ISO_RESOLVE_IN_ROOT 0x10
#define ISO_CLOSE_RANGE_CLOEXEC 4
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

struct iso_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

struct iso_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

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

/* ---- small helpers --------------------------------------------------------- */

static int write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, data, len);
    int saved = errno;
    close(fd);
    if (n != (ssize_t)len) {
        errno = n < 0 ? saved : EIO;
        return -1;
    }
    return 0;
}

/* "inside outside 1\n" */
static size_t fmt_map(char *buf, unsigned int inside, unsigned int outside)
{
    size_t n = iso_fmt_uint(buf, inside);
    buf[n++] = ' ';
    n += iso_fmt_uint(buf + n, outside);
    memcpy(buf + n, " 1\n", 3);
    return n + 3;
}

static int openat2_in_root(int rootfd, const char *path, int flags)
{
    struct iso_open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = ISO_RESOLVE_IN_ROOT | ISO_RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

/* Open the directory buf[0..len) (an absolute path inside `rootfd`: buf[0]
 * is '/'; len 0 is the root itself), creating every missing component, and
 * return an O_PATH fd to it (`rootfd` itself for the root).  Looks up from
 * the deepest level up (the parent of a target usually exists already), then
 * creates downwards: mkdirat + openat per missing component, no re-walk.
 * Symlinks met on the way resolve inside the new root, never on the host:
 * every lookup of a path is openat2 with RESOLVE_IN_ROOT from `rootfd`, and
 * a component is opened by name (O_NOFOLLOW) only right after mkdirat
 * created it.  On success buf[0..len) is intact and buf[len] is '\0'. */
static int open_dir(int rootfd, char *buf, size_t len)
{
    size_t end = len;
    int fd = rootfd;
    buf[len] = '\0';
    while (end > 0) {
        fd = openat2_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        if (fd >= 0)
            break;
        if (errno != ENOENT)
            return -1;
        fd = rootfd;
        while (buf[--end] != '/')
            ;
        buf[end] = '\0';
    }
    /* Every separator after `end` is '\0' now: restore each on the way down. */
    while (end < len) {
        buf[end] = '/';
        size_t name = end + 1;
        for (end = name; buf[end] != '\0'; end++)
            ;
        if (end == name) /* "//" */
            continue;
        int next;
        if (mkdirat(fd, buf + name, 0755) == 0)
            next = openat(fd, buf + name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        else if (errno == EEXIST) /* e.g. a symlink: resolve it inside the root */
            next = openat2_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
        else
            next = -1;
        if (fd != rootfd) {
            int saved = errno;
            close(fd);
            errno = saved;
        }
        if (next < 0)
            return -1;
        fd = next;
    }
    return fd;
}

/* Create the empty file `name` in `dir`; fails with EEXIST on anything
 * there, a dangling symlink included.  mknodat needs no fd to close; a file
 * system that does not do mknod for regular files (some FUSE ones) gets the
 * open(O_CREAT | O_EXCL) this used to be, whose error is then the one
 * reported. */
static int make_empty_file(int dir, const char *name)
{
    if (mknodat(dir, name, S_IFREG | 0444, 0) == 0)
        return 0;
    if (errno == EEXIST)
        return -1;
    int fd = openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* A mount point as make_target leaves it: `fd`, an O_PATH fd of an entry
 * that existed already (resolved inside the root); or, fd == -1, the entry
 * `name` that make_target has just created in the directory `dir`. */
struct mount_point {
    int fd;
    int dir;
    const char *name;
    char buf[4096];
};

/* Create every missing directory of `path` (inside `rootfd`), and the last
 * component as a directory or an empty file unless it exists.  Symlinks met
 * on the way resolve inside the new root, never on the host (see open_dir;
 * an existing last component is opened with openat2 too). */
static int make_target(int rootfd, const char *path, int as_dir, struct mount_point *mp)
{
    size_t len = strlen(path);
    mp->fd = -1;
    mp->dir = rootfd;
    mp->name = NULL;
    if (len == 0 || len >= sizeof mp->buf || path[0] != '/') {
        errno = EINVAL;
        return -1;
    }
    memcpy(mp->buf, path, len + 1);
    while (len > 1 && mp->buf[len - 1] == '/')
        mp->buf[--len] = '\0';
    if (len == 1) {
        mp->fd = openat2_in_root(rootfd, "/", O_PATH);
        return mp->fd;
    }
    char *slash = strrchr(mp->buf, '/');
    int dir = open_dir(rootfd, mp->buf, (size_t)(slash - mp->buf));
    if (dir < 0)
        return -1;
    *slash = '/';
    mp->dir = dir;
    mp->name = slash + 1;
    /* Both fail with EEXIST on anything there, a dangling symlink included. */
    if ((as_dir ? mkdirat(dir, mp->name, 0755) : make_empty_file(dir, mp->name)) == 0)
        return 0;
    if (errno != EEXIST)
        return -1;
    mp->fd = openat2_in_root(rootfd, mp->buf, O_PATH);
    return mp->fd;
}

/* Attach the detached mount `tree` at the mount point. */
static int move_to(int tree, const struct mount_point *mp)
{
    if (mp->fd >= 0)
        return (int)syscall(SYS_move_mount, tree, "", mp->fd, "",
                            ISO_MOVE_MOUNT_F_EMPTY_PATH | ISO_MOVE_MOUNT_T_EMPTY_PATH);
    /* One component, just created by us; without MOVE_MOUNT_T_SYMLINKS
     * move_mount would not follow it even if it were a symlink. */
    return (int)syscall(SYS_move_mount, tree, "", mp->dir, mp->name, ISO_MOVE_MOUNT_F_EMPTY_PATH);
}

static void release_target(int rootfd, const struct mount_point *mp)
{
    if (mp->fd >= 0)
        close(mp->fd);
    if (mp->dir != rootfd)
        close(mp->dir);
}

static __thread char fd_path_buf[64];

/* "/proc/self/fd/N": how the classic mount(2) reaches an fd's object. */
static const char *fd_path(int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    memcpy(fd_path_buf, prefix, sizeof prefix - 1);
    size_t n = iso_fmt_uint(fd_path_buf + sizeof prefix - 1, (unsigned int)fd);
    fd_path_buf[sizeof prefix - 1 + n] = '\0';
    return fd_path_buf;
}

static int set_attr(int fd, uint64_t set, int recursive)
{
    struct iso_mount_attr attr = {.attr_set = set};
    return (int)syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
                        sizeof attr);
}

/* Check that read-only really stuck on the mount `tree` refers to.  Called
 * right after move_mount attached it: move_mount moves the detached mount
 * itself into the namespace (it does not copy it), so the fd still refers to
 * the very mount now at the target, and fstatvfs reports that mount's flags
 * (ST_RDONLY from its MNT_READONLY, or from the superblock).  This is the
 * mount a fresh openat2 of the target would reach: nothing can be mounted
 * on top of it in between, and our root tmpfs is private, so there are no
 * propagated copies to check either. */
static void verify_read_only(int tree, const char *target)
{
    struct statvfs sv;
    CHECK(fstatvfs(tree, &sv), "fstatvfs", target);
    if (!(sv.f_flag & ST_RDONLY))
        iso_die("verify read-only mount", target, EPERM);
}

/* Attach the detached mount `tree` (attributes already set) at `target`,
 * a directory or a file like the tree's root (as_dir: 1 or 0 when known, -1
 * to look); check on the attached mount that read-only really stuck when
 * asked; close `tree`. */
static void attach_tree(int rootfd, int tree, const char *target, int as_dir, int read_only)
{
    if (as_dir < 0) {
        struct stat st;
        CHECK(fstat(tree, &st), "fstat(bind source)", target);
        as_dir = S_ISDIR(st.st_mode);
    }
    struct mount_point mp;
    CHECK(make_target(rootfd, target, as_dir, &mp), "create mount point", target);
    CHECK(move_to(tree, &mp), "move_mount", target);
    release_target(rootfd, &mp);
    if (read_only)
        verify_read_only(tree, target);
    close(tree);
}

/* Bind the tree at `srcfd` onto `target`: read-only or not, never setuid
 * nor device files. */
static void bind_tree(int rootfd, int srcfd, const char *target, int read_only)
{
    int tree = (int)syscall(SYS_open_tree, srcfd, "", ISO_OPEN_TREE_CLONE | ISO_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
                                                          AT_RECURSIVE);
    CHECK(tree, "open_tree", target);
    CHECK(set_attr(tree, ISO_MOUNT_ATTR_NOSUID | ISO_MOUNT_ATTR_NODEV | (read_only ? ISO_MOUNT_ATTR_RDONLY : 0), 1),
          "mount_setattr", target);
    attach_tree(rootfd, tree, target, -1, read_only);
}

static void mount_fresh(int rootfd, const char *target, const char *fstype, unsigned long flags, const char *opts)
{
    struct mount_point mp;
    CHECK(make_target(rootfd, target, 1, &mp), "create mount point", target);
    if (mp.fd < 0) {
        mp.fd = openat(mp.dir, mp.name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        CHECK(mp.fd, "create mount point", target);
    }
    CHECK(mount(fstype, fd_path(mp.fd), fstype, flags, opts), fstype, target);
    release_target(rootfd, &mp);
}

static void make_symlink(int rootfd, const char *text, const char *target)
{
    char parent[4096];
    size_t len = strlen(target);
    if (len >= sizeof parent)
        iso_die("symlink", target, ENAMETOOLONG);
    if (target[0] != '/')
        iso_die("symlink", target, EINVAL);
    memcpy(parent, target, len + 1);
    char *slash = strrchr(parent, '/');
    int dir = open_dir(rootfd, parent, (size_t)(slash - parent));
    CHECK(dir, "create parent directory", target);
    if (symlinkat(text, dir, slash + 1) < 0 && errno != EEXIST)
        iso_die("symlink", target, errno);
    if (dir != rootfd)
        close(dir);
}

/* A read-only file with fixed content: written into the staging directory
 * (outside the new root), then bound onto the target. */
static void make_file(int rootfd, int stagefd, int index, const struct iso_mount *m)
{
    char name[16];
    name[iso_fmt_uint(name, (unsigned int)index)] = '\0';
    int fd = openat(stagefd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444);
    CHECK(fd, "create file", m->target);
    size_t done = 0;
    while (done < m->data_len) {
        ssize_t n = write(fd, m->data + done, m->data_len - done);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n, "write file", m->target);
        done += (size_t)n;
    }
    /* The bind is cloned from the fd we wrote through: no second open. */
    int tree = (int)syscall(SYS_open_tree, fd, "", ISO_OPEN_TREE_CLONE | ISO_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
                                                      AT_RECURSIVE);
    CHECK(tree, "open_tree", m->target);
    close(fd);
    CHECK(set_attr(tree, ISO_MOUNT_ATTR_RDONLY | ISO_MOUNT_ATTR_NOSUID | ISO_MOUNT_ATTR_NODEV, 1), "mount_setattr",
          m->target);
    attach_tree(rootfd, tree, m->target, 0, 1);
}

/* buf = "MODE,size=BYTES": a fresh tmpfs's options.  A size of 0 would mean
 * "no bound" to the kernel, so it is refused instead. */
static const char *tmpfs_options(char *buf, const char *mode, uint64_t size, const char *target)
{
    static const char key[] = ",size=";
    char digits[24];
    size_t n = 0, len = strlen(mode);
    if (size == 0)
        iso_die("tmpfs size", target, EINVAL);
    do
        digits[n++] = (char)('0' + size % 10);
    while ((size /= 10) != 0);
    memcpy(buf, mode, len);
    memcpy(buf + len, key, sizeof key - 1);
    len += sizeof key - 1;
    while (n > 0)
        buf[len++] = digits[--n];
    buf[len] = '\0';
    return buf;
}

/* A fresh file system on the new directory `name` of the /dev tmpfs `dev`. */
static void mount_in_dev(int dev, const char *name, const char *fstype, unsigned long flags, const char *opts)
{
    CHECK(mkdirat(dev, name, 0755), "mkdir", name);
    int fd = openat(dev, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    CHECK(fd, "open", name);
    CHECK(mount(fstype, fd_path(fd), fstype, flags, opts), fstype, name);
    close(fd);
}

/* The name of `target` in the directory `dir` when it is an entry directly
 * there (a part's target in its parent's), else NULL. */
static const char *entry_in(const char *dir, const char *target)
{
    size_t n = strlen(dir);
    if (strncmp(target, dir, n) != 0 || target[n] != '/' || target[n + 1] == '\0' || strchr(target + n + 1, '/'))
        return NULL;
    return target + n + 1;
}

/* A minimal /dev: the host's device nodes of the `n` ISO_MOUNT_DEVICE parts
 * that follow `m`, a private devpts instance holding at most m->max_ptys ptys
 * (none at all, and no /dev/ptmx, for 0: the host's pty table is shared), a
 * /dev/shm of at most m->size bytes; the rest read-only. */
static void make_dev(int rootfd, const struct iso_mount *m, const struct iso_mount *nodes, int n)
{
    const char *target = m->target;
    char opts[96];
    mount_fresh(rootfd, target, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
    /* Everything below is created relative to the fresh tmpfs itself. */
    int dev = openat2_in_root(rootfd, target, O_PATH | O_DIRECTORY);
    CHECK(dev, "open", target);
    for (int i = 0; i < n; i++) {
        const char *host = nodes[i].source, *name = entry_in(target, nodes[i].target);
        if (name == NULL || host == NULL)
            iso_die("mount order", nodes[i].target, EINVAL);
        /* Cloned by its host path (resolved like open(2) did before). */
        int tree = (int)syscall(SYS_open_tree, AT_FDCWD, host, ISO_OPEN_TREE_CLONE | ISO_OPEN_TREE_CLOEXEC);
        CHECK(tree, "open_tree", host);
        /* Read-only: the node stays usable (writes go to the driver) but its
         * mode and times, which are the host's, cannot be changed. */
        CHECK(set_attr(tree, ISO_MOUNT_ATTR_RDONLY | ISO_MOUNT_ATTR_NOSUID | ISO_MOUNT_ATTR_NOEXEC, 0), "mount_setattr",
              host);
        /* The mount point: a fresh empty file (mknodat fails on anything
         * already there), which move_mount reaches by name. */
        CHECK(mknodat(dev, name, S_IFREG | 0600, 0), "create mount point", host);
        CHECK(syscall(SYS_move_mount, tree, "", dev, name, ISO_MOVE_MOUNT_F_EMPTY_PATH), "move_mount", host);
        close(tree);
    }
    if (m->max_ptys > 0) {
        static const char pts[] = "newinstance,ptmxmode=0666,mode=620,max=";
        memcpy(opts, pts, sizeof pts - 1);
        opts[sizeof pts - 1 + iso_fmt_uint(opts + sizeof pts - 1, (unsigned int)m->max_ptys)] = '\0';
        mount_in_dev(dev, "pts", "devpts", MS_NOSUID | MS_NOEXEC, opts);
        CHECK(symlinkat("pts/ptmx", dev, "ptmx"), "symlink", "ptmx");
    }
    mount_in_dev(dev, "shm", "tmpfs", MS_NOSUID | MS_NODEV, tmpfs_options(opts, "mode=1777", m->size, "/dev/shm"));
    static const char *const links[][2] = {
        {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
        {"/proc/self/fd/2", "stderr"},
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        CHECK(symlinkat(links[i][0], dev, links[i][1]), "symlink", links[i][1]);
    CHECK(set_attr(dev, ISO_MOUNT_ATTR_RDONLY | ISO_MOUNT_ATTR_NOSUID | ISO_MOUNT_ATTR_NOEXEC, 0), "mount_setattr",
          target);
    close(dev);
}

/* Hide the existing file `target` under an empty file nobody may open: mode
 * 0000, on a read-only, nosuid, nodev, noexec mount (so its owner, the
 * sandbox user, cannot chmod it either).  Nothing there: nothing to hide,
 * skipped.  The first mask is bound from a file made in the staging
 * directory and checked read-only; every later one is a clone of that
 * attached mount (*first), which carries its attributes: one open_tree and
 * one move_mount per mask. */
static void make_mask(int rootfd, int stagefd, int *first, const char *target)
{
    int at = openat2_in_root(rootfd, target, O_PATH | O_NOFOLLOW);
    if (at < 0 && errno == ENOENT)
        return;
    CHECK(at, "open mask target", target);
    int tree;
    if (*first < 0) {
        CHECK(mknodat(stagefd, "mask", S_IFREG | 0000, 0), "create mask", target);
        tree = (int)syscall(SYS_open_tree, stagefd, "mask", ISO_OPEN_TREE_CLONE | ISO_OPEN_TREE_CLOEXEC);
        CHECK(tree, "open_tree", target);
        CHECK(set_attr(tree, ISO_MOUNT_ATTR_RDONLY | ISO_MOUNT_ATTR_NOSUID | ISO_MOUNT_ATTR_NODEV |
                                 ISO_MOUNT_ATTR_NOEXEC, 0),
              "mount_setattr", target);
    } else {
        tree = (int)syscall(SYS_open_tree, *first, "", ISO_OPEN_TREE_CLONE | ISO_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        CHECK(tree, "open_tree", target);
    }
    CHECK(syscall(SYS_move_mount, tree, "", at, "", ISO_MOVE_MOUNT_F_EMPTY_PATH | ISO_MOVE_MOUNT_T_EMPTY_PATH),
          "move_mount", target);
    close(at);
    verify_read_only(tree, target);
    if (*first < 0)
        *first = tree;
    else
        close(tree);
}

/* A fresh /proc for the new pid namespace, with the entries of the `n`
 * ISO_MOUNT_PROC_RO parts that follow `m` (host-wide knobs, which
 * root-mapped sandboxes would otherwise own) made read-only.  Each is bound
 * onto itself: cloned by name from the fresh proc's root and moved back onto
 * the same name, so neither needs a path lookup from the new root nor a
 * mount point made.  A name the kernel lacks is skipped; one that is a
 * symlink is not followed (AT_SYMLINK_NOFOLLOW, and move_mount never follows
 * a final symlink without MOVE_MOUNT_T_SYMLINKS). */
static void make_proc(int rootfd, const struct iso_mount *m, const struct iso_mount *covers, int n)
{
    mount_fresh(rootfd, m->target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    int proc = openat2_in_root(rootfd, m->target, O_PATH | O_DIRECTORY);
    CHECK(proc, "open", m->target);
    for (int i = 0; i < n; i++) {
        const char *path = covers[i].target, *name = entry_in(m->target, path);
        if (name == NULL)
            iso_die("mount order", path, EINVAL);
        int tree = (int)syscall(SYS_open_tree, proc, name, ISO_OPEN_TREE_CLONE | ISO_OPEN_TREE_CLOEXEC |
                                                               AT_RECURSIVE | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT);
        if (tree < 0 && errno == ENOENT)
            continue;
        CHECK(tree, "open_tree", path);
        CHECK(set_attr(tree, ISO_MOUNT_ATTR_RDONLY | ISO_MOUNT_ATTR_NOSUID | ISO_MOUNT_ATTR_NODEV |
                                 ISO_MOUNT_ATTR_NOEXEC, 1),
              "mount_setattr", path);
        CHECK(syscall(SYS_move_mount, tree, "", proc, name, ISO_MOVE_MOUNT_F_EMPTY_PATH), "move_mount", path);
        verify_read_only(tree, path);
        close(tree);
    }
    close(proc);
}

/* How many entries of `kind` directly follow entry i: its parts. */
static int parts_after(const struct iso_config *cfg, int i, int kind)
{
    int n = 0;
    while (i + 1 + n < cfg->n_mounts && cfg->mounts[i + 1 + n].kind == kind)
        n++;
    return n;
}

/* ---- the steps ------------------------------------------------------------- */

static void setup_mounts(const struct iso_config *cfg)
{
    /* Bind sources are opened first, while the host tree is unobstructed.
     * (Only opened: cloned now, their mount ids, hence their order in
     * mountinfo, would come before the new root's.) */
    for (int i = 0; i < cfg->n_mounts; i++) {
        const struct iso_mount *m = &cfg->mounts[i];
        cfg->scratch[i] = -1;
        if (m->kind == ISO_MOUNT_RO_BIND || m->kind == ISO_MOUNT_RW_BIND) {
            cfg->scratch[i] = open(m->source, O_PATH | O_CLOEXEC);
            CHECK(cfg->scratch[i], "open bind source", m->source);
        }
    }
    CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make mounts private", "/");
    /* /tmp holds the scaffolding: the new root and the staging directory for
     * generated files.  Only the new root survives pivot_root. */
    CHECK(mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700"), "mount scaffolding tmpfs", "/tmp");
    CHECK(mkdir("/tmp/root", 0755), "mkdir", "/tmp/root");
    CHECK(mkdir("/tmp/files", 0700), "mkdir", "/tmp/files");
    CHECK(mount("tmpfs", "/tmp/root", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"), "mount root tmpfs", "/tmp/root");
    int rootfd = open("/tmp/root", O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(rootfd, "open", "/tmp/root");
    int stagefd = open("/tmp/files", O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(stagefd, "open", "/tmp/files");
    int mask = -1; /* the first mask's mount, which later ones clone */
    char opts[64];

    for (int i = 0; i < cfg->n_mounts; i++) {
        const struct iso_mount *m = &cfg->mounts[i];
        int parts;
        switch (m->kind) {
        case ISO_MOUNT_RO_BIND:
        case ISO_MOUNT_RW_BIND:
            bind_tree(rootfd, cfg->scratch[i], m->target, m->kind == ISO_MOUNT_RO_BIND);
            break;
        case ISO_MOUNT_TMPFS:
            mount_fresh(rootfd, m->target, "tmpfs", MS_NOSUID | MS_NODEV,
                        tmpfs_options(opts, strcmp(m->target, "/tmp") == 0 ? "mode=1777" : "mode=0755", m->size,
                                      m->target));
            break;
        case ISO_MOUNT_PROC: /* with its parts, which are skipped here */
            parts = parts_after(cfg, i, ISO_MOUNT_PROC_RO);
            make_proc(rootfd, m, m + 1, parts);
            i += parts;
            break;
        case ISO_MOUNT_DEV:
            parts = parts_after(cfg, i, ISO_MOUNT_DEVICE);
            make_dev(rootfd, m, m + 1, parts);
            i += parts;
            break;
        case ISO_MOUNT_PROC_RO: /* a part not right after its parent */
        case ISO_MOUNT_DEVICE:
            iso_die("mount order", m->target, EINVAL);
        case ISO_MOUNT_SYMLINK:
            make_symlink(rootfd, m->source, m->target);
            break;
        case ISO_MOUNT_FILE:
            make_file(rootfd, stagefd, i, m);
            break;
        case ISO_MOUNT_MASK:
            make_mask(rootfd, stagefd, &mask, m->target);
            break;
        default:
            iso_die("unknown mount kind", m->target, EINVAL);
        }
        if (cfg->scratch[i] >= 0) {
            close(cfg->scratch[i]);
            cfg->scratch[i] = -1;
        }
    }
    close(stagefd);
    if (mask >= 0)
        close(mask);

    /* Enter the new root; the old one is stacked beneath it and detached. */
    CHECK(fchdir(rootfd), "chdir", "/tmp/root");
    CHECK(syscall(SYS_pivot_root, ".", "."), "pivot_root", "/tmp/root");
    CHECK(umount2(".", MNT_DETACH), "detach old root", "/");
    CHECK(chdir("/"), "chdir", "/");
    /* rootfd was opened on the new root's mount, which "/" is now (nothing
     * is stacked on it since the old root is gone): no need to open "/". */
    CHECK(set_attr(rootfd, ISO_MOUNT_ATTR_RDONLY | ISO_MOUNT_ATTR_NOSUID | ISO_MOUNT_ATTR_NODEV, 0), "mount_setattr",
          "/");
    verify_read_only(rootfd, "/");
    close(rootfd);
}

static void loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s, "socket", "lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr), "ioctl(SIOCGIFFLAGS)", "lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr), "ioctl(SIOCSIFFLAGS)", "lo");
    close(s);
}

/* The Landlock ruleset mirroring the mounts (paths as the sandbox sees them). */
static int build_ruleset(const struct iso_config *cfg)
{
    struct iso_landlock_ruleset_attr attr = {
        .handled_access_fs = cfg->landlock_fs,
        .handled_access_net = cfg->landlock_net,
        .scoped = cfg->landlock_scoped,
    };
    int ruleset = (int)syscall(ISO_SYS_landlock_create_ruleset, &attr, (size_t)cfg->landlock_attr_size, 0);
    CHECK(ruleset, "landlock_create_ruleset", NULL);
    for (int i = 0; i < cfg->n_rules; i++) {
        const struct iso_rule *r = &cfg->rules[i];
        int fd = open(r->path, O_PATH | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue; /* nothing there: nothing to allow */
        CHECK(fd, "open landlock rule path", r->path);
        struct stat st;
        CHECK(fstat(fd, &st), "fstat", r->path);
        struct iso_landlock_path_beneath_attr pb = {
            .allowed_access = r->access & cfg->landlock_fs,
            .parent_fd = fd,
        };
        if (!S_ISDIR(st.st_mode))
            pb.allowed_access &= ISO_LANDLOCK_FILE_RIGHTS;
        CHECK(syscall(ISO_SYS_landlock_add_rule, ruleset, ISO_LANDLOCK_RULE_PATH_BENEATH, &pb, 0),
              "landlock_add_rule", r->path);
        close(fd);
    }
    if (cfg->landlock_port > 0 && cfg->landlock_net) {
        /* The egress proxy's port inside the sandbox's own namespace: its listener holds it. */
        struct iso_landlock_net_port_attr np = {
            .allowed_access = cfg->landlock_net,
            .port = (uint64_t)cfg->landlock_port,
        };
        CHECK(syscall(ISO_SYS_landlock_add_rule, ruleset, ISO_LANDLOCK_RULE_NET_PORT, &np, 0),
              "landlock_add_rule", "tcp port");
    }
    return ruleset;
}

/* Without a pid namespace: the child restricts itself and becomes the command. */
static void __attribute__((noreturn)) exec_command(const struct iso_config *cfg)
{
    struct iso_exec e = {
        .argv = cfg->argv,
        .envp = cfg->envp,
        .exe = cfg->exe,
        .cwd = cfg->cwd,
        .stdio = {cfg->stdio[0], cfg->stdio[1], cfg->stdio[2]},
        .rlimits = cfg->rlimits,
        .n_rlimits = cfg->n_rlimits,
        .drop_caps_upto = (cfg->flags & ISO_F_CAPS) ? cfg->cap_last_cap : -1,
        .clear_held_caps = (cfg->flags & ISO_F_HELD_CAPS) != 0,
        .set_ids = (cfg->flags & ISO_F_HOST_IDS) != 0,
        .uid = cfg->uid_inside,
        .gid = cfg->gid_inside,
        .landlock_fd = -1,
        .bpf = (cfg->flags & ISO_F_SECCOMP) ? cfg->bpf : NULL,
        .bpf_len = cfg->bpf_len,
    };
    if (cfg->flags & ISO_F_LANDLOCK)
        e.landlock_fd = build_ruleset(cfg);
    iso_exec_command(&e);
}

/* The child writes its own id maps: the caller is suspended (vfork) until
 * the child's execve.  A single line mapping the caller's own ids needs no
 * privilege in the parent namespace; setgroups must be denied first. */
static void write_id_maps(const struct iso_config *cfg)
{
    char map[64];
    size_t len;
    CHECK(write_file("/proc/self/setgroups", "deny", 4), "write id map", "/proc/self/setgroups");
    len = fmt_map(map, cfg->uid_inside, cfg->uid_outside);
    CHECK(write_file("/proc/self/uid_map", map, len), "write id map", "/proc/self/uid_map");
    len = fmt_map(map, cfg->gid_inside, cfg->gid_outside);
    CHECK(write_file("/proc/self/gid_map", map, len), "write id map", "/proc/self/gid_map");
}

/* Execute isolation-init (see init.c) with the control socket as fd 3 and,
 * when `ruleset` >= 0, the Landlock ruleset as fd 4; everything else closes,
 * 0-2 become /dev/null: EOF on the error pipe must come from the execs, and
 * the sandbox's stdio must not be held open by init.  Its argv only names it
 * and its environment is empty: nothing of the caller's goes with it. */
static void __attribute__((noreturn)) become_init(const struct iso_config *cfg, int control, int ruleset)
{
    int init_fd = fcntl(cfg->init_fd, F_DUPFD_CLOEXEC, 10);
    CHECK(init_fd, "dup", "isolation-init");
    CHECK(dup2(control, 3), "dup2", NULL);
    CHECK(fcntl(3, F_SETFD, 0), "fcntl(F_SETFD)", NULL);
    if (ruleset >= 0) {
        CHECK(dup2(ruleset, 4), "dup2", NULL);
        CHECK(fcntl(4, F_SETFD, 0), "fcntl(F_SETFD)", NULL);
    }
    CHECK(syscall(SYS_close_range, ruleset >= 0 ? 5 : 4, ~0U, ISO_CLOSE_RANGE_CLOEXEC), "close_range", NULL);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    CHECK(devnull, "open", "/dev/null");
    for (int fd = 0; fd < 3; fd++)
        CHECK(dup2(devnull, fd), "dup2", "/dev/null");
    char *const init_argv[] = {"isolation-init", NULL};
    char *const init_envp[] = {NULL};
    syscall(SYS_execveat, init_fd, "", init_argv, init_envp, AT_EMPTY_PATH);
    iso_die("execveat(isolation-init)", NULL, errno);
}

static void __attribute__((noreturn)) child_main(const struct iso_config *cfg, int caller_pidfd, int control)
{
    /* Die with the caller; and if it died before that took effect, stop here. */
    CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)", NULL);
    struct pollfd pfd = {.fd = caller_pidfd, .events = POLLIN};
    if (poll(&pfd, 1, 0) != 0)
        _exit(125);
    close(caller_pidfd);
    /* Join the caller's cgroup for this sandbox before anything else runs in
     * it, so every process of the sandbox is counted ("0": the writer). */
    if (cfg->cgroup_procs_fd >= 0 && write(cfg->cgroup_procs_fd, "0", 1) != 1)
        iso_die("join cgroup", "cgroup.procs", errno);
    if ((cfg->flags & ISO_F_USERNS) && cfg->ns_fds[0] < 0) /* a prepared one is mapped already */
        write_id_maps(cfg);

    if (cfg->flags & ISO_F_MOUNTNS)
        setup_mounts(cfg);
    if ((cfg->flags & ISO_F_NETNS) && cfg->ns_fds[1] < 0) /* a prepared one has loopback up */
        loopback_up();
    if (cfg->flags & ISO_F_UTSNS)
        CHECK(sethostname(cfg->hostname, strlen(cfg->hostname)), "sethostname", cfg->hostname);

    if (!(cfg->flags & ISO_F_PIDNS))
        exec_command(cfg);

    /* init keeps no privilege it does not need.  (It makes itself non-dumpable
     * first thing after its exec, in init.c: "dumpable" belongs to the address
     * space, which is still the caller's here.  No other process of the
     * sandbox exists until then: init starts the worker.) */
    if (cfg->flags & ISO_F_CAPS)
        iso_drop_capabilities(cfg->cap_last_cap);
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)", NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    /* isolation-init holds the Landlock ruleset built here (the rules name
     * paths of this root) and takes the command from the control socket. */
    int ruleset = -1;
    if (cfg->flags & ISO_F_LANDLOCK) {
        ruleset = fcntl(build_ruleset(cfg), F_DUPFD_CLOEXEC, 10);
        CHECK(ruleset, "dup", "landlock ruleset");
    }
    become_init(cfg, control, ruleset);
}

/* ---- the caller's side ------------------------------------------------------ */

/* The signals blocked on the calling thread while a child runs in its memory:
 * all but SIGCHLD.  No child can receive SIGCHLD before it resets its
 * handlers (none has a child of its own by then), and a SIGCHLD the calling
 * thread blocks while a short-lived child exits would instead be made pending
 * on another thread of the caller, whose blocking write then returns short. */
static void block_for_clone(sigset_t *set)
{
    sigfillset(set);
    sigdelset(set, SIGCHLD);
}

static void fail(struct iso_error *error, const char *step, const char *path, int err)
{
    iso_copy_str(error->step, sizeof error->step, step);
    iso_copy_str(error->path, sizeof error->path, path);
    error->err = err;
}

/* Read the setup report on the error pipe until EOF.  0: EOF, nothing
 * reported (every process that held the pipe executed or exited); -1: a
 * (step, path, errno) record, or a torn one, is in *error. */
static int read_setup_report(int fd, struct iso_error *error)
{
    struct iso_error rec;
    size_t got = 0;
    while (got < sizeof rec) {
        ssize_t n = read(fd, (char *)&rec + got, sizeof rec - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == 0)
        return 0;
    if (got == sizeof rec) {
        *error = rec;
        error->step[sizeof rec.step - 1] = '\0';
        error->path[sizeof rec.path - 1] = '\0';
    } else {
        fail(error, "read setup report", NULL, EIO);
    }
    return -1;
}

/* The payload of a command too large to travel inline: a memfd holding it,
 * sealed, or -1 with *error set. */
static int payload_memfd(const char *buf, size_t len, struct iso_error *error)
{
    int memfd = memfd_create("isolation-command", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd < 0) {
        fail(error, "memfd_create", NULL, errno);
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(memfd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fail(error, "write command", NULL, n < 0 ? errno : EIO);
            close(memfd);
            return -1;
        }
        done += (size_t)n;
    }
    if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        fail(error, "seal command", NULL, errno);
        close(memfd);
        return -1;
    }
    return memfd;
}

/* Queue the command of `cfg` for a sandbox's init on `control_fd` (worker.h),
 * with stdio, the write ends of the error and status pipes, and `cgroup_fd`
 * when >= 0.  No cap of our own on the payload: execve, in the worker,
 * judges argv and envp.  0, or -1 with *error set. */
static int send_command(int control_fd, const struct iso_config *cfg, int err_w, int status_w, int cgroup_fd,
                        struct iso_error *error)
{
    struct iso_exec e = {
        .argv = cfg->argv,
        .envp = cfg->envp,
        .exe = cfg->exe,
        .cwd = cfg->cwd,
        .rlimits = cfg->rlimits,
        .n_rlimits = cfg->n_rlimits,
        .bpf = (cfg->flags & ISO_F_SECCOMP) ? cfg->bpf : NULL,
        .bpf_len = cfg->bpf_len,
    };
    struct iso_command_head head;
    size_t len = iso_command_size(&e, &head);
    char *buf = malloc(len); /* the caller's side: allocating is fine here */
    if (buf == NULL) {
        fail(error, "malloc", NULL, ENOMEM);
        return -1;
    }
    iso_pack_command(&e, &head, buf);
    /* Inline unless too large for the message; a socket whose send buffer
     * cannot take it (a host with a tiny net.core.wmem_default) gets the
     * memfd too. */
    int memfd = -1;
    if (len > ISO_COMMAND_INLINE && (memfd = payload_memfd(buf, len, error)) < 0) {
        free(buf);
        return -1;
    }
    ssize_t sent;
    size_t want;
    for (;;) {
        struct iso_command_msg msg_head = {.magic = ISO_COMMAND_MAGIC, .flags = 0, .payload_len = len};
        int fds[ISO_COMMAND_FDS] = {cfg->stdio[0], cfg->stdio[1], cfg->stdio[2], err_w, status_w};
        size_t nfds = 5;
        if (cgroup_fd >= 0) {
            msg_head.flags |= ISO_CMD_CGROUP;
            fds[nfds++] = cgroup_fd;
        }
        if (memfd >= 0) {
            msg_head.flags |= ISO_CMD_MEMFD;
            fds[nfds++] = memfd;
        }
        union {
            struct cmsghdr align;
            char bytes[CMSG_SPACE(sizeof(int) * ISO_COMMAND_FDS)];
        } control;
        memset(&control, 0, sizeof control);
        struct iovec iov[2] = {{.iov_base = &msg_head, .iov_len = sizeof msg_head},
                               {.iov_base = buf, .iov_len = len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = memfd >= 0 ? 1 : 2, .msg_control = control.bytes,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        want = sizeof msg_head + (memfd >= 0 ? 0 : len);
        do
            sent = sendmsg(control_fd, &msg, MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        if (sent < 0 && errno == EMSGSIZE && memfd < 0) {
            if ((memfd = payload_memfd(buf, len, error)) < 0) {
                free(buf);
                return -1;
            }
            continue;
        }
        break;
    }
    int err = errno;
    free(buf);
    if (memfd >= 0)
        close(memfd);
    if (sent != (ssize_t)want) {
        fail(error, "send command", NULL, sent < 0 ? err : EIO);
        return -1;
    }
    return 0;
}

struct child_args {
    const struct iso_config *cfg;
    int err_fd;
    int control_fd;     /* the sandbox's end of the control socket (pid namespace only) */
    int caller_pidfd;
    int sandbox_flags;  /* the joiner's clone flags for the sandbox */
    char *sandbox_stack;
    pid_t sandbox_pid;  /* set by the joiner */
};

static int child_entry(void *arg)
{
    struct child_args *a = arg;
    iso_err_fd = a->err_fd;
    child_main(a->cfg, a->caller_pidfd, a->control_fd);
}

static const int prepared_types[3] = {CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWIPC};
static const char *const prepared_names[3] = {"/proc/self/ns/user", "/proc/self/ns/net", "/proc/self/ns/ipc"};
static const int prepared_flags[3] = {ISO_F_USERNS, ISO_F_NETNS, ISO_F_IPCNS};

/* With prepared namespaces: a short-lived child of the caller joins them
 * (user first: it grants the capabilities the others need), then clones the
 * sandbox as the caller's own child (CLONE_PARENT) with the namespaces still
 * to be created, and exits once the sandbox has executed its init. */
static int joiner_entry(void *arg)
{
    struct child_args *a = arg;
    iso_err_fd = a->err_fd;
    for (int i = 0; i < 3; i++)
        if (a->cfg->ns_fds[i] >= 0 && setns(a->cfg->ns_fds[i], prepared_types[i]) < 0)
            iso_die("setns", prepared_names[i], errno);
    pid_t pid = clone(child_entry, a->sandbox_stack, a->sandbox_flags | CLONE_PARENT, a);
    if (pid < 0)
        iso_die("clone", NULL, errno);
    a->sandbox_pid = pid;
    _exit(0);
}

int iso_spawn(const struct iso_config *cfg, struct iso_started *out)
{
    int err_pipe[2] = {-1, -1}, status_pipe[2] = {-1, -1}, control[2] = {-1, -1}, caller_pidfd = -1;
    const size_t stack_size = 512 * 1024;
    void *stack = MAP_FAILED;
    sigset_t all, saved;
    memset(out, 0, sizeof *out);
    out->pid = -1;
    out->status_fd = -1;
    if (pipe2(err_pipe, O_CLOEXEC) < 0 || pipe2(status_pipe, O_CLOEXEC) < 0) {
        fail(&out->error, "pipe2", NULL, errno);
        goto fail;
    }
    caller_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (caller_pidfd < 0) {
        fail(&out->error, "pidfd_open", NULL, errno);
        goto fail;
    }
    fcntl(caller_pidfd, F_SETFD, FD_CLOEXEC);
    /* With a pid namespace, isolation-init (pid 1) exists before any other
     * process of the sandbox: it takes the command from a control socket
     * and starts the worker.  A sandbox built ahead of demand waits on the
     * caller's socket; on demand the command is queued before the clone, so
     * init finds it at once, and the error pipe (in the message) reports
     * the worker's setup like the sandbox's. */
    int control_fd = -1;
    if ((cfg->flags & ISO_F_PIDNS) && (cfg->flags & ISO_F_PREPARED)) {
        control_fd = cfg->control_fd;
    } else if (cfg->flags & ISO_F_PIDNS) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, control) < 0) {
            fail(&out->error, "socketpair", NULL, errno);
            goto fail;
        }
        if (send_command(control[0], cfg, err_pipe[1], status_pipe[1], -1, &out->error) < 0)
            goto fail;
        close(control[0]); /* init reads what is queued */
        control[0] = -1;
        control_fd = control[1];
    }
    stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        fail(&out->error, "mmap(child stack)", NULL, errno);
        goto fail;
    }

    static const int namespaces[][2] = {
        {ISO_F_USERNS, CLONE_NEWUSER}, {ISO_F_MOUNTNS, CLONE_NEWNS}, {ISO_F_PIDNS, CLONE_NEWPID},
        {ISO_F_NETNS, CLONE_NEWNET},   {ISO_F_IPCNS, CLONE_NEWIPC},  {ISO_F_UTSNS, CLONE_NEWUTS},
        {ISO_F_CGROUPNS, CLONE_NEWCGROUP},
    };
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    for (size_t i = 0; i < sizeof namespaces / sizeof namespaces[0]; i++)
        if (cfg->flags & namespaces[i][0])
            flags |= namespaces[i][1];
    int prepared = cfg->ns_fds[0] >= 0;
    for (int i = 0; i < 3; i++)
        if (cfg->ns_fds[i] >= 0)
            flags &= ~prepared_types[i];

    /* The child runs in this process's memory until its execve (vfork
     * semantics: this thread waits), so copying the caller's page tables, the
     * dominant cost for a large Python process, is avoided.  No signal
     * handler of the caller may run in the child: signals are blocked around
     * the clone (see block_for_clone); the children reset dispositions
     * before unblocking anything. */
    /* The joiner, when there is one, runs on the top 64 KiB of the stack
     * area and the sandbox below it. */
    struct child_args args = {cfg, err_pipe[1], control_fd, caller_pidfd, flags,
                              (char *)stack + stack_size - 64 * 1024, -1};
    block_for_clone(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = prepared ? clone(joiner_entry, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &args)
                         : clone(child_entry, (char *)stack + stack_size, flags, &args);
    int saved_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (prepared && pid > 0) {
        /* The joiner has exited (vfork); the sandbox, if it started, is our child. */
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
        pid = args.sandbox_pid;
        if (pid < 0)
            pid = 0; /* nothing started: the joiner's report says why */
    }
    munmap(stack, stack_size);
    stack = MAP_FAILED;
    close(caller_pidfd);
    caller_pidfd = -1;
    close(err_pipe[1]);
    err_pipe[1] = -1;
    close(status_pipe[1]);
    status_pipe[1] = -1;
    if (control[1] >= 0) { /* init's copy is all that is left; so is the command's */
        close(control[1]);
        control[1] = -1;
    }
    if (pid < 0) {
        fail(&out->error, "clone", NULL, saved_errno);
        goto fail;
    }

    int reported = read_setup_report(err_pipe[0], &out->error);
    if (reported == 0 && pid <= 0) { /* the joiner was killed before it reported */
        fail(&out->error, "clone", NULL, ECHILD);
        goto fail;
    }
    if (reported != 0) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
        goto fail;
    }
    close(err_pipe[0]);
    out->pid = pid;
    out->status_fd = status_pipe[0];
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
        if (status_pipe[i] >= 0)
            close(status_pipe[i]);
        if (control[i] >= 0)
            close(control[i]);
    }
    if (caller_pidfd >= 0)
        close(caller_pidfd);
    if (stack != MAP_FAILED)
        munmap(stack, stack_size);
    return -1;
}

/* ---- namespaces prepared ahead of demand ------------------------------------ */

struct prepare_args {
    const struct iso_config *cfg;
    int err_fd;
    int *fds;
};

/* Runs in the caller's memory and descriptor table (CLONE_VM|CLONE_FILES):
 * the descriptors it opens stay with the caller when it exits. */
static int prepare_entry(void *arg)
{
    struct prepare_args *a = arg;
    iso_err_fd = a->err_fd;
    write_id_maps(a->cfg);
    if (a->cfg->flags & ISO_F_NETNS)
        loopback_up();
    for (int i = 0; i < 3; i++) {
        if (!(a->cfg->flags & prepared_flags[i]))
            continue;
        int fd = open(prepared_names[i], O_RDONLY | O_CLOEXEC);
        CHECK(fd, "open", prepared_names[i]);
        a->fds[i] = fd;
    }
    _exit(0);
}

int iso_prepare_namespaces(const struct iso_config *cfg, int fds[3], struct iso_error *err)
{
    int err_pipe[2];
    const size_t stack_size = 64 * 1024;
    sigset_t all, saved;
    memset(err, 0, sizeof *err);
    for (int i = 0; i < 3; i++)
        fds[i] = -1;
    if (!(cfg->flags & ISO_F_USERNS)) {
        fail(err, "prepare namespaces", NULL, EINVAL);
        return -1;
    }
    if (pipe2(err_pipe, O_CLOEXEC) < 0) {
        fail(err, "pipe2", NULL, errno);
        return -1;
    }
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        fail(err, "mmap(child stack)", NULL, errno);
        close(err_pipe[0]);
        close(err_pipe[1]);
        return -1;
    }
    int flags = CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_NEWUSER | SIGCHLD;
    if (cfg->flags & ISO_F_NETNS)
        flags |= CLONE_NEWNET;
    if (cfg->flags & ISO_F_IPCNS)
        flags |= CLONE_NEWIPC;
    struct prepare_args args = {cfg, err_pipe[1], fds};
    block_for_clone(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = clone(prepare_entry, (char *)stack + stack_size, flags, &args);
    int saved_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    munmap(stack, stack_size);
    close(err_pipe[1]); /* the only copy: the child shared this table and has exited */
    int status = 0;
    if (pid > 0)
        while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
            ;
    int reported = pid > 0 ? read_setup_report(err_pipe[0], err) : 0;
    close(err_pipe[0]);
    if (pid < 0 || reported != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (pid < 0)
            fail(err, "clone", NULL, saved_errno);
        else if (reported == 0) /* killed, or exited without a report */
            fail(err, "prepare namespaces", NULL, EIO);
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0) {
                close(fds[i]);
                fds[i] = -1;
            }
        return -1;
    }
    return 0;
}

/* ---- running a command in a prepared sandbox --------------------------------- */

int iso_run_prepared(int control_fd, const struct iso_config *cfg, struct iso_started *out)
{
    int err_pipe[2] = {-1, -1}, status_pipe[2] = {-1, -1};
    memset(out, 0, sizeof *out);
    out->pid = -1;
    out->status_fd = -1;
    if (pipe2(err_pipe, O_CLOEXEC) < 0 || pipe2(status_pipe, O_CLOEXEC) < 0) {
        fail(&out->error, "pipe2", NULL, errno);
        goto fail;
    }
    if (send_command(control_fd, cfg, err_pipe[1], status_pipe[1], cfg->cgroup_procs_fd, &out->error) < 0)
        goto fail;
    close(err_pipe[1]);
    err_pipe[1] = -1;
    close(status_pipe[1]);
    status_pipe[1] = -1;

    /* EOF: the command was executed (or the sandbox died, which its exit status tells). */
    if (read_setup_report(err_pipe[0], &out->error) != 0)
        goto fail;
    close(err_pipe[0]);
    out->status_fd = status_pipe[0];
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
        if (status_pipe[i] >= 0)
            close(status_pipe[i]);
    }
    return -1;
}
