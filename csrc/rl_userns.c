/* rl_userns.c: namespace steps for a child forked by Python (see rl_userns.h). */
#include "rootless.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/prctl.h>

static int die_with_parent(struct rl_error *err)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        return rl_error_set(err, errno, RL_STAGE_CLONE, "prctl(PR_SET_PDEATHSIG)");
    return 0;
}

int rl_ns_unshare(int which, struct rl_error *err)
{
    int flags = 0;
    if (which & RL_NS_USER)
        flags |= CLONE_NEWUSER;
    if (which & RL_NS_MOUNT)
        flags |= CLONE_NEWNS;
    if (die_with_parent(err) < 0)
        return -1;
    if (flags != 0 && unshare(flags) < 0)
        return rl_error_set(err, errno, RL_STAGE_CLONE, "cannot create a user namespace");
    return 0;
}

static int join_one(int pid, const char *ns, int nstype, struct rl_error *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, ns);
    RL_CLEANUP_CLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rl_error_set(err, errno, RL_STAGE_CLONE, "cannot open %s", path);
    if (setns(fd, nstype) < 0)
        return rl_error_set(err, errno, RL_STAGE_CLONE, "cannot join the container's %s namespace", ns);
    return 0;
}

int rl_ns_join(int pid, int which, struct rl_error *err)
{
    if (die_with_parent(err) < 0)
        return -1;
    if ((which & RL_NS_USER) && join_one(pid, "user", CLONE_NEWUSER, err) < 0)
        return -1;
    if ((which & RL_NS_MOUNT) && join_one(pid, "mnt", CLONE_NEWNS, err) < 0)
        return -1;
    return 0;
}

int rl_ns_mount_overlay(const char *dir, const char *data, const char *target, struct rl_error *err)
{
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot make the mount tree private");
    if (chdir(dir) < 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "cannot enter the layer directory %s", dir);
    int rc = mount("overlay", target, "overlay", 0, data);
    int saved = errno;
    if (chdir("/") < 0 && rc == 0)
        return rl_error_set(err, errno, RL_STAGE_MOUNT, "chdir /");
    if (rc < 0)
        return rl_error_set(err, saved, RL_STAGE_MOUNT, "cannot mount the container's overlay on %s", target);
    return 0;
}
