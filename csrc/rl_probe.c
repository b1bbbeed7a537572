/* rl_probe.c: find out what this kernel lets an unprivileged user do. */
#include "rootless.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Run fn in a child cloned with `flags`; its exit status is an errno (0 = ok). */
static int probe_child(unsigned long flags, int (*fn)(void *), void *arg, const char *what, struct rl_error *err)
{
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0)
        return rl_error_set(err, errno, RL_STAGE_PROBE, "%s: clone failed", what);
    if (pid == 0)
        _exit(fn(arg));
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0)
        if (errno != EINTR)
            return rl_error_set(err, errno, RL_STAGE_PROBE, "%s: waitpid failed", what);
    if (!WIFEXITED(status))
        return rl_error_set(err, EIO, RL_STAGE_PROBE, "%s: probe crashed", what);
    if (WEXITSTATUS(status) != 0)
        return rl_error_set(err, WEXITSTATUS(status), RL_STAGE_PROBE, "%s", what);
    return 0;
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

int rl_probe_userns(struct rl_error *err)
{
    return probe_child(CLONE_NEWUSER, nothing, NULL, "user namespace", err);
}

int rl_probe_openat2(struct rl_error *err)
{
    if (!rl_have_openat2())
        return rl_error_set(err, ENOSYS, RL_STAGE_PROBE, "openat2 is not available");
    return 0;
}

struct overlay_args {
    uid_t uid;
    gid_t gid;
    const char *merged;
    char opts[3072];
};

static int map_self(uid_t uid, gid_t gid)
{
    char buf[64];
    int fd, n;
    n = snprintf(buf, sizeof(buf), "0 %u 1\n", (unsigned)uid);
    if ((fd = open("/proc/self/uid_map", O_WRONLY | O_CLOEXEC)) < 0 || write(fd, buf, (size_t)n) != n)
        return errno ? errno : EIO;
    close(fd);
    if ((fd = open("/proc/self/setgroups", O_WRONLY | O_CLOEXEC)) >= 0) {
        if (write(fd, "deny", 4) != 4) {
            close(fd);
            return errno ? errno : EIO;
        }
        close(fd);
    }
    n = snprintf(buf, sizeof(buf), "0 %u 1\n", (unsigned)gid);
    if ((fd = open("/proc/self/gid_map", O_WRONLY | O_CLOEXEC)) < 0 || write(fd, buf, (size_t)n) != n)
        return errno ? errno : EIO;
    close(fd);
    return 0;
}

static int try_overlay(void *arg)
{
    struct overlay_args *a = arg;
    int e = map_self(a->uid, a->gid);
    if (e != 0)
        return e;
    if (mount("overlay", a->merged, "overlay", 0, a->opts) < 0)
        return errno;
    umount2(a->merged, MNT_DETACH);
    return 0;
}

int rl_probe_overlay(const char *lower, const char *upper, const char *work,
                     const char *merged, const char *extra_opts, struct rl_error *err)
{
    struct overlay_args a;
    a.uid = getuid();
    a.gid = getgid();
    a.merged = merged;
    int n = snprintf(a.opts, sizeof(a.opts), "lowerdir=%s,upperdir=%s,workdir=%s%s%s", lower, upper, work,
                     extra_opts && extra_opts[0] ? "," : "", extra_opts ? extra_opts : "");
    if (n < 0 || (size_t)n >= sizeof(a.opts))
        return rl_error_set(err, ENAMETOOLONG, RL_STAGE_PROBE, "overlay options too long");
    return probe_child(CLONE_NEWUSER | CLONE_NEWNS, try_overlay, &a, "overlay mount in a user namespace", err);
}
