/* rl_mount.c: carry out the mount table inside the child's new mount namespace,
 * then pivot_root into the new root. Runs in the cloned child: no malloc, no stdio. */
#include "rootless.h"

#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <linux/capability.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif

static void fd_path(char *buf, size_t cap, int fd)
{
    char digits[16];
    int n = 0;
    unsigned v = (unsigned)fd;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    size_t pos = rl_strlcpy(buf, "/proc/self/fd/", cap);
    while (n > 0 && pos + 1 < cap)
        buf[pos++] = digits[--n];
    buf[pos] = '\0';
}

/* Flags a user namespace may not drop when remounting (they are "locked"). */
static unsigned long locked_flags(int fd)
{
    struct statvfs sv;
    unsigned long flags = 0;
    if (fstatvfs(fd, &sv) < 0)
        return 0;
    if (sv.f_flag & ST_NOSUID)
        flags |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        flags |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        flags |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        flags |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        flags |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        flags |= MS_RELATIME;
    return flags;
}

/* Make the mount whose root is `fd` read-only (with its submounts when `recursive`). */
static int make_readonly(int fd, const char *what, int recursive, struct rl_error *err)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = MOUNT_ATTR_RDONLY;
    unsigned at = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
    if (syscall(SYS_mount_setattr, fd, "", at, &attr, sizeof(attr)) == 0)
        return 0;
    if (errno != ENOSYS && errno != EINVAL)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot make %s read-only", what);
    char p[64];
    fd_path(p, sizeof(p), fd);
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(fd);
    if (mount(NULL, p, NULL, flags, NULL) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot make %s read-only", what);
    return 0;
}

static int open_target(int rootfd, const struct rl_mount *m, int is_file)
{
    if (m->mflags & RL_MF_NOCREATE)
        return rl_open_in_root(rootfd, m->target, O_PATH, 0);
    if (is_file)
        return rl_mkfile_in_root(rootfd, m->target, 0644);
    return rl_mkdir_in_root(rootfd, m->target, 0755);
}

static int op_bind(int rootfd, const struct rl_mount *m, struct rl_error *err)
{
    RL_CLEANUP_CLOSE int tfd = open_target(rootfd, m, m->mflags & RL_MF_FILE);
    if (tfd < 0) {
        if ((m->mflags & RL_MF_NOCREATE) && errno == ENOENT)
            return 0;
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot create mount point %s", m->target);
    }
    char p[64];
    fd_path(p, sizeof(p), tfd);
    unsigned long flags = MS_BIND | ((m->mflags & RL_MF_RECURSIVE) ? MS_REC : 0);
    /* RL_MF_SELF: the target onto itself (to make a part of the new tree read-only) */
    if (mount((m->mflags & RL_MF_SELF) ? p : m->source, p, NULL, flags, NULL) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot bind-mount %s on %s", m->source, m->target);
    if (!(m->mflags & RL_MF_RDONLY))
        return 0;
    /* The old fd sees what was under the mount; reopen to reach the new mount. */
    RL_CLEANUP_CLOSE int nfd = rl_open_in_root(rootfd, m->target, O_PATH, 0);
    if (nfd < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot reopen %s", m->target);
    return make_readonly(nfd, m->target, m->mflags & RL_MF_RECURSIVE, err);
}

static int op_mount(int rootfd, const struct rl_mount *m, struct rl_error *err)
{
    RL_CLEANUP_CLOSE int tfd = open_target(rootfd, m, m->mflags & RL_MF_FILE);
    if (tfd < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot create mount point %s", m->target);
    char p[64];
    fd_path(p, sizeof(p), tfd);
    if (mount(m->source, p, m->fstype, m->flags, m->data) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot mount %s on %s", m->fstype, m->target);
    return 0;
}

static int op_symlink(int rootfd, const struct rl_mount *m, struct rl_error *err)
{
    char parent[4096];
    if (rl_strlcpy(parent, m->target, sizeof(parent)) >= sizeof(parent))
        return rl_error_set(err, ENAMETOOLONG, RL_STAGE_MOUNT, "path too long: %s", m->target);
    char *slash = strrchr(parent, '/');
    const char *name = parent;
    RL_CLEANUP_CLOSE int dfd = -1;
    if (slash != NULL) {
        *slash = '\0';
        name = slash + 1;
        dfd = rl_mkdir_in_root(rootfd, parent[0] ? parent : ".", 0755);
    } else {
        dfd = rl_open_in_root(rootfd, ".", O_PATH | O_DIRECTORY, 0);
    }
    if (dfd < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot open the directory of %s", m->target);
    if (symlinkat(m->source, dfd, name) < 0 && errno != EEXIST)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot create symlink %s", m->target);
    return 0;
}

static int op_remount_ro(int rootfd, const struct rl_mount *m, struct rl_error *err)
{
    RL_CLEANUP_CLOSE int fd = rl_open_in_root(rootfd, m->target, O_PATH, 0);
    if (fd < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot open %s", m->target);
    return make_readonly(fd, m->target[0] ? m->target : "/", 0, err);
}

static int run_op(int rootfd, const struct rl_mount *m, struct rl_error *err)
{
    switch (m->op) {
    case RL_OP_BIND:
        return op_bind(rootfd, m, err);
    case RL_OP_MOUNT:
        return op_mount(rootfd, m, err);
    case RL_OP_MKDIR: {
        int fd = rl_mkdir_in_root(rootfd, m->target, m->mode ? m->mode : 0755);
        if (fd < 0)
            return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot create directory %s", m->target);
        close(fd);
        return 0;
    }
    case RL_OP_SYMLINK:
        return op_symlink(rootfd, m, err);
    case RL_OP_REMOUNT_RO:
        return op_remount_ro(rootfd, m, err);
    case RL_OP_OVERLAY:
    case RL_OP_HELPER:
        return 0; /* done in mount_overlays() before the root exists */
    default:
        return rl_error_set(err, EINVAL, RL_STAGE_MOUNT, "unknown mount op %d", m->op);
    }
}

/* A helper run as a non-root id of the namespace (a single mapping of --user's id)
 * would lose every capability at execve, and its mount(2) would fail: keep
 * CAP_SYS_ADMIN as an ambient capability (it then stays effective across exec). */
static void keep_mount_capability(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (geteuid() == 0 || syscall(SYS_capget, &hdr, data) < 0)
        return;
    data[CAP_SYS_ADMIN / 32].inheritable |= 1U << (CAP_SYS_ADMIN % 32);
    if (syscall(SYS_capset, &hdr, data) == 0)
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0);
}

/* Overlay roots are mounted on host paths first; the mount lives and dies with this
 * mount namespace, so no stale mount is ever left on the host. */
/* fuse-overlayfs, squashfuse and friends: fork (raw clone: we may share the caller's
 * memory), exec the prebuilt argv, and wait until it has mounted and daemonised. */
static int run_helper(const struct rl_mount *m, const char *const *envp, struct rl_error *err)
{
    if (m->argv == NULL || m->argv[0] == NULL)
        return rl_error_set(err, EINVAL, RL_STAGE_MOUNT, "mount helper without a command");
    if (m->source != NULL && chdir(m->source) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot enter the layer directory %s", m->source);
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot fork %s", m->argv[0]);
    if (pid == 0) {
        keep_mount_capability();
        execve(m->argv[0], (char *const *)m->argv, (char *const *)envp);
        _exit(127);
    }
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0)
        if (errno != EINTR)
            return rl_error_set(err, errno, RL_STAGE_MOUNT, "waitpid for %s failed", m->argv[0]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return rl_error_set(err, EIO, RL_STAGE_MOUNT, "%s could not mount %s (exit status %d)", m->argv[0],
                            m->target, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}

/* Kernel overlay roots are mounted on host paths first; the mount lives and dies with
 * this mount namespace, so no stale mount is ever left on the host. The FUSE helpers'
 * mounts are already there (rl_run_helpers, before the child was told to go). */
static int mount_overlays(const struct rl_spawn_config *cfg, struct rl_error *err)
{
    for (size_t i = 0; i < cfg->n_mounts; i++) {
        const struct rl_mount *m = &cfg->mounts[i];
        if (m->op != RL_OP_OVERLAY)
            continue;
        if (m->source != NULL && chdir(m->source) < 0)
            return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot enter the layer directory %s", m->source);
        if (mount("overlay", m->target, "overlay", m->flags, m->data) < 0)
            return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot mount the overlay root on %s", m->target);
    }
    return 0;
}

static size_t ns_path(char *buf, size_t cap, int pid, const char *name)
{
    char digits[16];
    int n = 0;
    unsigned v = (unsigned)pid;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    size_t pos = rl_strlcpy(buf, "/proc/", cap);
    while (n > 0 && pos + 1 < cap)
        buf[pos++] = digits[--n];
    buf[pos] = '\0';
    pos += rl_strlcpy(buf + pos, "/ns/", cap - pos);
    return pos + rl_strlcpy(buf + pos, name, cap - pos);
}

/* The body of the process that runs the helpers (see rl_run_helpers). */
static int helpers_main(int pid, const struct rl_spawn_config *cfg, struct rl_error *err)
{
    static const char *const helper_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC); /* the daemons get none of our fds */
    char upath[64], mpath[64];
    ns_path(upath, sizeof(upath), pid, "user");
    ns_path(mpath, sizeof(mpath), pid, "mnt");
    RL_CLEANUP_CLOSE int ufd = open(upath, O_RDONLY | O_CLOEXEC);
    RL_CLEANUP_CLOSE int mfd = open(mpath, O_RDONLY | O_CLOEXEC);
    if (ufd < 0 || mfd < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot open the namespaces of the container");
    if (setns(ufd, CLONE_NEWUSER) < 0 || setns(mfd, CLONE_NEWNS) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot join the namespaces of the container");
    /* The container's tree (still the copy of the host's it was born with) becomes a
     * peer of ours: what the helpers mount here appears there. */
    if (mount("none", "/", NULL, MS_REC | MS_SHARED, NULL) < 0 || unshare(CLONE_NEWNS) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot prepare a mount namespace for the helpers");
    size_t i = 0;
    int rc = 0;
    for (; i < cfg->n_mounts; i++) {
        if (cfg->mounts[i].op == RL_OP_HELPER && run_helper(&cfg->mounts[i], helper_env, err) < 0) {
            rc = -1;
            break;
        }
    }
    /* Let go of them here (without touching the container's copies): the daemons then
     * exit when the container's last reference to their mounts is gone. */
    mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL);
    while (i-- > 0)
        if (cfg->mounts[i].op == RL_OP_HELPER)
            umount2(cfg->mounts[i].target, MNT_DETACH);
    return rc;
}

/* Run the RL_OP_HELPER daemons (fuse-overlayfs, squashfuse) for the child `pid`, which
 * waits to be told to go. They must not live in the container's PID namespace: a
 * container process with the same uid could ptrace them or open /proc/<pid>/root,
 * which is their (host) root. So a process forked here, in the host's PID namespace,
 * joins the child's user and mount namespaces, makes that tree a peer of a copy of
 * its own and runs the helpers in the copy: their mounts propagate to the child, and
 * they stay out of the container's sight. A FUSE daemon must keep the host's view
 * (after pivot_root it would resolve its own paths through its own mount: a
 * deadlock), which this gives it too. Called in the parent; allocation-free. */
int rl_run_helpers(int pid, const struct rl_spawn_config *cfg, struct rl_error *err)
{
    int any = 0;
    for (size_t i = 0; cfg != NULL && i < cfg->n_mounts; i++)
        any |= cfg->mounts[i].op == RL_OP_HELPER;
    if (!any)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "socketpair failed");
    long f = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (f < 0) {
        int saved = errno;
        close(sv[0]);
        close(sv[1]);
        return rl_error_set(err, saved, RL_STAGE_MOUNT, "cannot fork the mount helpers");
    }
    if (f == 0) {
        close(sv[0]);
        struct rl_error e;
        memset(&e, 0, sizeof(e));
        int rc = helpers_main(pid, cfg, &e);
        if (rc < 0)
            send(sv[1], &e, sizeof(e), MSG_NOSIGNAL);
        _exit(rc < 0 ? 1 : 0);
    }
    close(sv[1]);
    struct rl_error e;
    ssize_t n;
    do
        n = recv(sv[0], &e, sizeof(e), 0);
    while (n < 0 && errno == EINTR);
    close(sv[0]);
    int status = 0;
    while (waitpid((pid_t)f, &status, 0) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof(e)) {
        *err = e;
        errno = e.errnum;
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return rl_error_set(err, EIO, RL_STAGE_MOUNT, "the mount helpers' process failed");
    return 0;
}

static int hold(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

/* Container root has CAP_SYS_ADMIN over the mount namespace it was born in, so it
 * could unmount or remount read-write what was just set up (read-only volumes and
 * root, /sys, the masks over /proc). A copy of the table made for a new, child user
 * namespace is locked by the kernel (MNT_LOCKED, MNT_LOCK_READONLY and friends): a
 * holder process is cloned into a new user and mount namespace, and we join its mount
 * namespace. We stay in our own user namespace (the pid, ipc, uts and net namespaces
 * are owned by it); only the mount namespace belongs to the child one. */
static int lock_mount_table(int last_pid_fd, struct rl_error *err)
{
    char stack[16384] __attribute__((aligned(16)));
    int pid = clone(hold, stack + sizeof(stack), CLONE_VM | CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, NULL);
    if (pid < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot create the namespace that locks the mounts");
    char path[64];
    ns_path(path, sizeof(path), pid, "mnt");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = fd >= 0 ? setns(fd, CLONE_NEWNS) : -1;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
    /* The holder took PID 2; give it back, so that the command (or --init's child)
     * gets the PID it always had. The sysctl acts on the writer's PID namespace. */
    if (last_pid_fd >= 0 && write(last_pid_fd, "1", 1) < 0) {
        /* a host with a read-only /proc/sys: the next PID is 3, that is all */
    }
    if (rc < 0)
        return rl_error_set(err, saved, RL_STAGE_MOUNT, "cannot lock the mount table");
    if (chdir("/") < 0)
        return rl_error_set(err, errno, RL_STAGE_PIVOT, "cannot chdir to the new root");
    return 0;
}

/* Build the new root at cfg->rootfs and pivot into it. Leaves cwd at the new "/". */
int rl_build_root(const struct rl_spawn_config *cfg, struct rl_error *err)
{
    /* opened through the host's /proc while it is still ours (see lock_mount_table) */
    RL_CLEANUP_CLOSE int last_pid_fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot make the mount tree private");
    if (mount_overlays(cfg, err) < 0)
        return -1;
    if (mount(cfg->rootfs, cfg->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot bind-mount the rootfs %s", cfg->rootfs);
    RL_CLEANUP_CLOSE int rootfd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot open the rootfs %s", cfg->rootfs);
    for (size_t i = 0; i < cfg->n_mounts; i++) {
        if (run_op(rootfd, &cfg->mounts[i], err) < 0 && !(cfg->mounts[i].mflags & RL_MF_OPTIONAL))
            return -1;
    }
    if (cfg->sflags & RL_SF_READONLY_ROOT) {
        RL_CLEANUP_CLOSE int top = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (top < 0 || make_readonly(top, "the root filesystem", 0, err) < 0)
            return top < 0 ? rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot reopen the rootfs") : -1;
    }
    /* pivot_root(".", ".") stacks the old root on top of the new one; detach it. */
    if (fchdir(rootfd) < 0)
        return rl_error_set(err, errno, RL_STAGE_PIVOT, "cannot enter the rootfs");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return rl_error_set(err, errno, RL_STAGE_PIVOT, "pivot_root into %s failed", cfg->rootfs);
    if (umount2(".", MNT_DETACH) < 0)
        return rl_error_set(err, errno, RL_STAGE_PIVOT, "cannot detach the old root");
    if (chdir("/") < 0)
        return rl_error_set(err, errno, RL_STAGE_PIVOT, "cannot chdir to the new root");
    return lock_mount_table(last_pid_fd, err);
}
