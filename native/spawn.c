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
 * ruleset, loads the seccomp filter and executes isolation-init, which waits on a control socket for
 * the command (sent by the caller's Python, message.py, at once on demand or
 * later to a sandbox prepared ahead of demand) and only then forks the
 * worker: no process of the sandbox ever sees pid 1 in the caller's memory.
 * The worker applies the per-process restrictions (session, rlimits,
 * Landlock) and executes the command.  When the worker ends,
 * init reports its wait status and exits, and the kernel kills whatever is
 * left in the pid namespace.  Without a pid namespace (the best-effort host
 * layout) the child restricts itself and executes the command: no init.
 *
 * Nothing here allocates memory after clone: the caller is a multi-threaded
 * Python process, so only async-signal-safe work is done in the children.
 *
 * This file holds the choreography (iso_spawn and the child's steps); the
 * mount tree is mounts.c, the per-process restrictions worker.c, the error
 * report report.c (init's side of the command message is command.c).
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "landlock.h"
#include "mounts.h"
#include "report.h"
#include "syscalls.h"
#include "worker.h"

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

/* ---- the steps ------------------------------------------------------------- */

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
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, (size_t)cfg->landlock_attr_size, 0);
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
            pb.allowed_access &= cfg->landlock_file_rights;
        CHECK(syscall(SYS_landlock_add_rule, ruleset, ISO_LANDLOCK_RULE_PATH_BENEATH, &pb, 0),
              "landlock_add_rule", r->path);
        close(fd);
    }
    if (cfg->landlock_port > 0 && cfg->landlock_net) {
        /* The egress proxy's port inside the sandbox's own namespace: its listener holds it. */
        struct iso_landlock_net_port_attr np = {
            .allowed_access = cfg->landlock_net,
            .port = (uint64_t)cfg->landlock_port,
        };
        CHECK(syscall(SYS_landlock_add_rule, ruleset, ISO_LANDLOCK_RULE_NET_PORT, &np, 0),
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

/* Execute isolation-init (see init.c) under the sandbox's seccomp filter,
 * with the control socket as fd 3 and,
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
    /* The sandbox's seccomp filter, last: isolation-init and every process it
     * starts run under it (init's few system calls are none it refuses), so a
     * run of a prepared sandbox does not pay for loading it. */
    if (cfg->flags & ISO_F_SECCOMP)
        iso_load_seccomp(cfg->bpf, cfg->bpf_len);
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
    if (cfg->flags & ISO_F_USERNS)
        write_id_maps(cfg);

    if (cfg->flags & ISO_F_MOUNTNS)
        iso_setup_mounts(cfg);
    if (cfg->flags & ISO_F_NETNS)
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

struct child_args {
    const struct iso_config *cfg;
    int err_fd;
    int control_fd;     /* the sandbox's end of the control socket (pid namespace only) */
    int caller_pidfd;
};

static int child_entry(void *arg)
{
    struct child_args *a = arg;
    iso_err_fd = a->err_fd;
    child_main(a->cfg, a->caller_pidfd, a->control_fd);
}

int iso_spawn(const struct iso_config *cfg, struct iso_started *out)
{
    int err_pipe[2] = {-1, -1}, status_pipe[2] = {-1, -1}, caller_pidfd = -1;
    const size_t stack_size = 512 * 1024;
    void *stack = MAP_FAILED;
    sigset_t all, saved;
    memset(out, 0, sizeof *out);
    out->pid = -1;
    out->status_fd = -1;
    if (pipe2(err_pipe, O_CLOEXEC) < 0 || pipe2(status_pipe, O_CLOEXEC) < 0) {
        iso_fail(&out->error, "pipe2", NULL, errno);
        goto fail;
    }
    caller_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (caller_pidfd < 0) {
        iso_fail(&out->error, "pidfd_open", NULL, errno);
        goto fail;
    }
    fcntl(caller_pidfd, F_SETFD, FD_CLOEXEC);
    /* With a pid namespace, isolation-init (pid 1) exists before any other
     * process of the sandbox: it waits on the caller's control socket for
     * the command (which the caller's Python sends, message.py) and only
     * then starts the worker. */
    int control_fd = -1;
    if (cfg->flags & ISO_F_PIDNS) {
        if (!(cfg->flags & ISO_F_PREPARED) || cfg->control_fd < 0) {
            iso_fail(&out->error, "control socket", NULL, EINVAL);
            goto fail;
        }
        control_fd = cfg->control_fd;
    }
    stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        iso_fail(&out->error, "mmap(child stack)", NULL, errno);
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

    /* The child runs in this process's memory until its execve (vfork
     * semantics: this thread waits), so copying the caller's page tables, the
     * dominant cost for a large Python process, is avoided.  No signal
     * handler of the caller may run in the child: signals are blocked around
     * the clone (see block_for_clone); the children reset dispositions
     * before unblocking anything. */
    struct child_args args = {cfg, err_pipe[1], control_fd, caller_pidfd};
    block_for_clone(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = clone(child_entry, (char *)stack + stack_size, flags, &args);
    int saved_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    munmap(stack, stack_size);
    stack = MAP_FAILED;
    close(caller_pidfd);
    caller_pidfd = -1;
    close(err_pipe[1]);
    err_pipe[1] = -1;
    close(status_pipe[1]);
    status_pipe[1] = -1;
    if (pid < 0) {
        iso_fail(&out->error, "clone", NULL, saved_errno);
        goto fail;
    }

    if (iso_read_report(err_pipe[0], &out->error) != 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
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
    }
    if (caller_pidfd >= 0)
        close(caller_pidfd);
    if (stack != MAP_FAILED)
        munmap(stack, stack_size);
    return -1;
}
