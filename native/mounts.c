/* The sandbox's minimal root: every mount of cfg->mounts made inside a fresh
 * tmpfs, then pivot_root into it (step table: docs/native.md, steps 6-9).
 *
 * Runs in the child, in its own mount namespace, between clone and execve:
 * only async-signal-safe work, no allocation.  Symlinks met on the way
 * resolve inside the new root (openat2 RESOLVE_IN_ROOT), never on the host.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include "sandbox.h"
#include "mounts.h"
#include "report.h"
#include "syscalls.h"

/* ---- the new mount API's flags and structs (not all in Debian 12's headers) - */

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

/* ---- the mount tree and pivot_root ----------------------------------------------- */

void iso_setup_mounts(const struct iso_config *cfg)
{
    /* Bind sources are opened first, while the host tree is unobstructed.
     * (Only opened: cloned now, their mount ids, hence their order in
     * mountinfo, would come before the new root's.) */
    for (int i = 0; i < cfg->n_mounts; i++) {
        const struct iso_mount *m = &cfg->mounts[i];
        cfg->source_fds[i] = -1;
        if (m->kind == ISO_MOUNT_RO_BIND || m->kind == ISO_MOUNT_RW_BIND) {
            cfg->source_fds[i] = open(m->source, O_PATH | O_CLOEXEC);
            CHECK(cfg->source_fds[i], "open bind source", m->source);
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
            bind_tree(rootfd, cfg->source_fds[i], m->target, m->kind == ISO_MOUNT_RO_BIND);
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
        if (cfg->source_fds[i] >= 0) {
            close(cfg->source_fds[i]);
            cfg->source_fds[i] = -1;
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
