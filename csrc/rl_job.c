/* rl_job.c: store jobs (layer unpack, tree removal) in a forked child that
 * enters a new user namespace, so a user with subordinate ids can create and
 * delete files owned by the container's ids. See rl_job.h for the protocol.
 *
 * Messages travel over a SOCK_SEQPACKET pair, one fixed-size struct each:
 *   child  -> parent  READY   after unshare(CLONE_NEWUSER) (or an ERROR)
 *   parent -> child   GO      once the maps are written (EOF: abort)
 *   child  -> parent  DONE    stats, or ERROR with a filled rl_error */
#include "rootless.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define JOB_READY 1
#define JOB_GO 2
#define JOB_DONE 3
#define JOB_ERROR 4
#define RMTREE_DEPTH_MAX 4096

struct job_msg {
    int type;
    struct rl_untar_stats stats;
    struct rl_error err;
};

static int send_job_msg(int fd, int type, const struct rl_untar_stats *stats,
                        const struct rl_error *err)
{
    struct job_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    if (stats != NULL)
        m.stats = *stats;
    if (err != NULL)
        m.err = *err;
    ssize_t n;
    while ((n = send(fd, &m, sizeof(m), MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return n == (ssize_t)sizeof(m) ? 0 : -1;
}

/* 1: a message was read; 0: EOF; -1: error (errno). */
static int recv_job_msg(int fd, struct job_msg *m)
{
    ssize_t n;
    memset(m, 0, sizeof(*m));
    while ((n = recv(fd, m, sizeof(*m), 0)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof(*m)) {
        errno = EPROTO;
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------- rmtree */

static int rm_entries(int dfd, int depth, struct rl_error *err);

static int open_dir_fixing(int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES && fchmodat(parent, name, 0700, 0) == 0)
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd;
}

static int unlink_fixing(int dfd, const char *name, int flags)
{
    if (unlinkat(dfd, name, flags) == 0 || errno == ENOENT)
        return 0;
    if (errno != EACCES && errno != EPERM)
        return -1;
    int saved = errno;
    if (fchmod(dfd, 0700) < 0) {
        errno = saved;
        return -1;
    }
    if (unlinkat(dfd, name, flags) == 0 || errno == ENOENT)
        return 0;
    return -1;
}

/* Remove one entry of the open directory dfd (recursing into directories). */
static int rm_entry(int dfd, const char *name, unsigned char type, int depth, struct rl_error *err)
{
    if (type != DT_DIR && type != DT_UNKNOWN) {
        if (unlink_fixing(dfd, name, 0) == 0)
            return 0;
        if (errno != EISDIR)
            return rl_error_set(err, errno, RL_STAGE_NONE, "cannot remove %s", name);
    }
    int sub = open_dir_fixing(dfd, name);
    if (sub < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == ENOTDIR || errno == ELOOP) {
            if (unlink_fixing(dfd, name, 0) == 0)
                return 0;
        }
        return rl_error_set(err, errno, RL_STAGE_NONE, "cannot open %s", name);
    }
    if (depth >= RMTREE_DEPTH_MAX) {
        close(sub);
        return rl_error_set(err, ELOOP, RL_STAGE_NONE, "directory tree too deep at %s", name);
    }
    int rc = rm_entries(sub, depth + 1, err); /* takes ownership of sub */
    if (rc < 0)
        return rc;
    if (unlink_fixing(dfd, name, AT_REMOVEDIR) < 0)
        return rl_error_set(err, errno, RL_STAGE_NONE, "cannot remove directory %s", name);
    return 0;
}

/* Empty the directory dfd (closed on return). The directory is made writable
 * first when it is not: entries of a 0555 directory cannot be unlinked. */
static int rm_entries(int dfd, int depth, struct rl_error *err)
{
    struct stat st;
    if (fstat(dfd, &st) == 0 && (st.st_mode & 0700) != 0700)
        (void)fchmod(dfd, (st.st_mode & 07777) | 0700);
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return rl_error_set(err, errno, RL_STAGE_NONE, "cannot read a directory");
    }
    /* Delete while listing, then list again until a pass finds nothing: the
     * effect of unlinking on an open listing is unspecified. */
    int rc = 0, removed = 1;
    while (rc == 0 && removed) {
        removed = 0;
        for (;;) {
            errno = 0;
            struct dirent *e = readdir(d);
            if (e == NULL) {
                if (errno != 0)
                    rc = rl_error_set(err, errno, RL_STAGE_NONE, "cannot read a directory");
                break;
            }
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (rm_entry(dirfd(d), e->d_name, e->d_type, depth, err) < 0) {
                rc = -1;
                break;
            }
            removed = 1;
        }
        if (removed)
            rewinddir(d);
    }
    closedir(d);
    return rc;
}

int rl_rmtree_at(int dirfd, const char *name, struct rl_error *err)
{
    if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return rl_error_set(err, EINVAL, RL_STAGE_NONE, "rmtree: bad name");
    return rm_entry(dirfd, name, DT_UNKNOWN, 0, err);
}

/* ---------------------------------------------------------------- child */

static void close_fds_except(const int *keep, int n)
{
    /* keep[] holds at most 3 fds; close every other fd >= 3. */
    int sorted[3];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (keep[i] >= 3)
            sorted[m++] = keep[i];
    for (int i = 0; i < m; i++)
        for (int j = i + 1; j < m; j++)
            if (sorted[j] < sorted[i]) {
                int t = sorted[i];
                sorted[i] = sorted[j];
                sorted[j] = t;
            }
    unsigned int from = 3;
    for (int i = 0; i < m; i++) {
        if ((unsigned int)sorted[i] > from)
            syscall(SYS_close_range, from, (unsigned int)sorted[i] - 1, 0U);
        from = (unsigned int)sorted[i] + 1;
    }
    syscall(SYS_close_range, from, ~0U, 0U);
}

static int run_job(const struct rl_job *job, struct rl_untar_stats *stats, struct rl_error *err)
{
    if (job->kind == RL_JOB_UNTAR)
        return rl_untar(job->tar_fd, job->dirfd, &job->untar, stats, err);
    if (job->kind == RL_JOB_RMTREE)
        return rl_rmtree_at(job->dirfd, job->name, err);
    return rl_error_set(err, EINVAL, RL_STAGE_INIT, "job: unknown kind %d", job->kind);
}

static _Noreturn void job_child(const struct rl_job *job, int sync, pid_t parent)
{
    struct rl_error err;
    struct rl_untar_stats stats;
    memset(&err, 0, sizeof(err));
    memset(&stats, 0, sizeof(stats));
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    int keep[3] = {sync, job->tar_fd, job->dirfd};
    close_fds_except(keep, 3);
    if (!job->no_userns && unshare(CLONE_NEWUSER) < 0) {
        rl_error_set(&err, errno, RL_STAGE_CLONE, "job: cannot create a user namespace");
        send_job_msg(sync, JOB_ERROR, NULL, &err);
        _exit(1);
    }
    if (send_job_msg(sync, JOB_READY, NULL, NULL) < 0)
        _exit(1);
    struct job_msg go;
    if (recv_job_msg(sync, &go) != 1 || go.type != JOB_GO)
        _exit(1);
    if (run_job(job, &stats, &err) < 0) {
        send_job_msg(sync, JOB_ERROR, NULL, &err);
        _exit(1);
    }
    send_job_msg(sync, JOB_DONE, &stats, NULL);
    _exit(0);
}

/* ---------------------------------------------------------------- parent */

static void reap(int pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int child_status_error(int pid, struct rl_error *err)
{
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return rl_error_set(err, errno, RL_STAGE_SYNC, "job: cannot reap the child");
    if (WIFSIGNALED(status))
        return rl_error_set(err, EINTR, RL_STAGE_SYNC, "job: child killed by signal %d",
                            WTERMSIG(status));
    return rl_error_set(err, EPIPE, RL_STAGE_SYNC, "job: child exited (status %d) without a result",
                        WEXITSTATUS(status));
}

int rl_job_start(const struct rl_job *job, int *pid, int *sync_fd, struct rl_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return rl_error_set(err, errno, RL_STAGE_SYNC, "job: socketpair");
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        int saved = errno;
        close(sv[0]);
        close(sv[1]);
        return rl_error_set(err, saved, RL_STAGE_CLONE, "job: fork");
    }
    if (child == 0) {
        close(sv[0]);
        job_child(job, sv[1], parent);
    }
    close(sv[1]);
    struct job_msg m;
    int r = recv_job_msg(sv[0], &m);
    if (r == 1 && m.type == JOB_READY) {
        *pid = child;
        *sync_fd = sv[0];
        return 0;
    }
    close(sv[0]);
    if (r == 1 && m.type == JOB_ERROR) {
        reap(child);
        *err = m.err;
        return -1;
    }
    return child_status_error(child, err);
}

int rl_job_finish(int pid, int sync_fd, struct rl_untar_stats *stats, struct rl_error *err)
{
    struct job_msg go;
    memset(&go, 0, sizeof(go));
    go.type = JOB_GO;
    if (send(sync_fd, &go, sizeof(go), MSG_NOSIGNAL) != (ssize_t)sizeof(go)) {
        close(sync_fd);
        return child_status_error(pid, err);
    }
    struct job_msg m;
    int r = recv_job_msg(sync_fd, &m);
    close(sync_fd);
    if (r == 1 && m.type == JOB_DONE) {
        reap(pid);
        if (stats != NULL)
            *stats = m.stats;
        return 0;
    }
    if (r == 1 && m.type == JOB_ERROR) {
        reap(pid);
        *err = m.err;
        return -1;
    }
    return child_status_error(pid, err);
}

void rl_job_abort(int pid, int sync_fd)
{
    if (sync_fd >= 0)
        close(sync_fd);
    if (pid > 0) {
        kill(pid, SIGKILL);
        reap(pid);
    }
}
