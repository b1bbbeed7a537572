/* rl_job.h: store jobs run in a forked child inside a new user namespace
 * (cdef-parsable, appended to rl_api.h after rl_untar.h).
 *
 * A user with subordinate id ranges must unpack layers with the container's
 * ids (chown to mapped ids) and later delete such trees: only a process inside
 * a user namespace with the full id map may do that. Protocol:
 *
 *   rl_job_start()   fork(); the child closes every fd but the job's, calls
 *                    unshare(CLONE_NEWUSER), says READY and waits. The caller
 *                    gets the pid and writes the child's maps (newuidmap/newgidmap).
 *   rl_job_finish()  says GO; the child runs the job, sends its result (stats
 *                    or an rl_error) and _exits; finish reaps it.
 *   rl_job_abort()   kills and reaps a child that was started but not finished.
 *
 * fork() (not a raw clone) keeps malloc usable in the child even when the
 * caller has threads; the child never returns to the caller's code. The flag
 * `no_userns` runs the job in the forked child without a new namespace. */

#define RL_JOB_UNTAR 1  /* rl_untar(tar_fd, dirfd, &untar) */
#define RL_JOB_RMTREE 2 /* delete `name` below dirfd, recursively */

struct rl_job {
    int kind;
    int no_userns;       /* 1: stay in the caller's user namespace */
    int tar_fd;          /* UNTAR: tar stream (read to EOF) */
    int dirfd;           /* UNTAR: destination root; RMTREE: parent of `name` */
    const char *name;    /* RMTREE: the entry below dirfd to delete */
    struct rl_untar_opts untar;
};

int rl_job_start(const struct rl_job *job, int *pid, int *sync_fd, struct rl_error *err);
int rl_job_finish(int pid, int sync_fd, struct rl_untar_stats *stats, struct rl_error *err);
void rl_job_abort(int pid, int sync_fd);

/* Delete `name` below dirfd recursively without following symlinks; directories
 * that deny reading or writing are made 0700 first. ENOENT is success. */
int rl_rmtree_at(int dirfd, const char *name, struct rl_error *err);
