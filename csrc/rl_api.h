/* rl_api.h: the whole C surface of rootless, read verbatim as the cffi cdef.
 *
 * Rules: no #include, no #ifdef, only "#define NAME <integer>" constants, so that
 * cffi can parse it. Every fallible function takes `struct rl_error *err` last,
 * returns < 0 on failure and fills `err` (errno, stage, message); it never prints
 * and never exits.
 */

#define RL_ERR_MSG_LEN 480

struct rl_error {
    int errnum;
    int stage;
    char msg[480];
};

/* Where a failure happened (rl_error.stage). */
#define RL_STAGE_NONE 0
#define RL_STAGE_CLONE 1
#define RL_STAGE_SYNC 2
#define RL_STAGE_IDMAP 3
#define RL_STAGE_MOUNT 4
#define RL_STAGE_PIVOT 5
#define RL_STAGE_HOSTNAME 6
#define RL_STAGE_NETWORK 7
#define RL_STAGE_CWD 8
#define RL_STAGE_USER 9
#define RL_STAGE_EXEC 10
#define RL_STAGE_PTY 11
#define RL_STAGE_PROBE 12
#define RL_STAGE_INIT 13
#define RL_STAGE_UNTAR 14
#define RL_STAGE_JOIN 15

struct rl_idmap {
    uint32_t inside;
    uint32_t outside;
    uint32_t count;
};

/* Mount table operations, run in order inside the new mount namespace.
 * Every `target` is a path inside the new root, resolved without ever leaving it.
 * `source` of RL_OP_BIND / RL_OP_DEV is a host path, opened before pivot_root. */
#define RL_OP_BIND 1       /* bind source onto target; RL_MF_* in mflags */
#define RL_OP_MOUNT 2      /* mount(source, target, fstype, flags, data) */
#define RL_OP_MKDIR 3      /* mkdir -p target with mode */
#define RL_OP_SYMLINK 4    /* symlink(source, target) */
#define RL_OP_REMOUNT_RO 5 /* make the mount at target read-only ("" or "/" = the root) */
#define RL_OP_OVERLAY 6    /* before the root is built: chdir(source), then mount overlay on the
                              HOST path target with data (relative lowerdirs keep it short) */
#define RL_OP_HELPER 7     /* before the root is built: chdir(source), run argv (e.g. fuse-overlayfs,
                              which mounts target and stays as its daemon) and wait for it to
                              exit 0 */

#define RL_MF_RDONLY 1    /* bind: read-only */
#define RL_MF_RECURSIVE 2 /* bind: recursive (rbind) */
#define RL_MF_FILE 4      /* target is a file (created empty when missing) */
#define RL_MF_OPTIONAL 8  /* a failure is ignored (e.g. a host device that is absent) */
#define RL_MF_NOCREATE 16 /* never create the target; skip the op when it is missing */
#define RL_MF_SELF 32     /* bind: the target onto itself, `source` unused (with RL_MF_RDONLY:
                             make that part of the new tree read-only) */

struct rl_mount {
    int op;
    int mflags;
    const char *source;
    const char *target;
    const char *fstype;
    const char *data;
    unsigned long flags;
    unsigned int mode;
    const char *const *argv; /* RL_OP_HELPER: NULL-terminated */
};

/* Spawn flags (rl_spawn_config.sflags). */
#define RL_SF_NEWNET 1         /* new network namespace, loopback brought up */
#define RL_SF_TTY 2            /* allocate a pty in the container's devpts; master sent back */
#define RL_SF_INIT 4           /* a tiny PID 1 that reaps zombies and forwards signals */
#define RL_SF_READONLY_ROOT 8  /* remount the root read-only after the mount table */
#define RL_SF_SETGROUPS 16     /* call setgroups() (only when the id map allows it) */
#define RL_SF_NO_NEW_PRIVS 32  /* prctl(PR_SET_NO_NEW_PRIVS) before execve */
#define RL_SF_FAKEROOT 128     /* seccomp: chown/setuid families and device mknod succeed as no-ops */
#define RL_SF_SECCOMP 512       /* the default seccomp profile (a deny list, csrc/rl_seccomp.c) */
#define RL_SF_FAKEROOT_RECORD 256 /* with RL_SF_FAKEROOT: the chown family goes to a supervisor
                                     (seccomp user notification; its fd comes back as notify_fd)
                                     that records the owners, instead of being dropped */
#define RL_SF_LINGER 1024      /* with RL_SF_INIT: PID 1 stays until no process is left in its
                                  PID namespace (processes that joined it with setns, e.g. the
                                  other ranks of --sharens), then exits with the command's status;
                                  signals then go to every process in the namespace */

struct rl_spawn_config {
    int sflags;
    const char *rootfs;                 /* directory that becomes / */
    const struct rl_mount *mounts;
    size_t n_mounts;
    const char *const *argv;            /* NULL-terminated */
    const char *const *envp;            /* NULL-terminated */
    const char *cwd;                    /* inside the container */
    uint32_t uid;
    uint32_t gid;
    const uint32_t *groups;
    size_t n_groups;
    const char *hostname;
    int stdio[3];                       /* fds for 0,1,2 in the child (ignored with RL_SF_TTY) */
    unsigned short tty_rows;            /* initial pty window size (0: leave the default) */
    unsigned short tty_cols;
};

struct rl_child {
    int pid;      /* in the caller's pid namespace */
    int sync_fd;  /* parent end of the sync socket */
    int pty_fd;   /* pty master when RL_SF_TTY, else -1 */
    int notify_fd; /* seccomp listener with RL_SF_FAKEROOT_RECORD, else -1 */
    void *stack;  /* the child's stack until it has exec'ed or exited (rl_release) */
    size_t stack_size;
    const struct rl_spawn_config *cfg; /* rl_spawn's config: rl_continue runs its RL_OP_HELPERs */
};

/* Clone a child into new user, mount, pid, ipc and uts (and net) namespaces.
 * The child blocks until rl_continue(); the caller writes its id maps first. */
int rl_spawn(const struct rl_spawn_config *cfg, struct rl_child *out, struct rl_error *err);

/* Start a process inside the namespaces of the running container whose PID 1 is
 * `target_pid` (docker exec): a helper joins its user, mount, ipc, uts, net and pid
 * namespaces, then runs cfg->argv as a child inside them, forwarding signals and
 * exiting with its status. cfg->rootfs and cfg->mounts are ignored. Continue with
 * rl_continue() as for rl_spawn. */
int rl_exec(int target_pid, const struct rl_spawn_config *cfg, struct rl_child *out, struct rl_error *err);

/* Tell the mapped child to build its root and execve. Returns 0 once execve
 * succeeded (the sync socket closed on exec), or < 0 with the child's error;
 * the child has then exited and must still be reaped. */
int rl_continue(struct rl_child *child, struct rl_error *err);

/* Abort a spawned child that was never continued (closes the sync socket). */
void rl_abort(struct rl_child *child);

/* Free what the child used; call once it has been reaped (or has exec'ed). */
void rl_release(struct rl_child *child);

/* Write /proc/<pid>/{uid_map,setgroups,gid_map} directly. */
int rl_set_idmap(int pid, const struct rl_idmap *uids, size_t n_uids,
                 const struct rl_idmap *gids, size_t n_gids, int deny_setgroups,
                 struct rl_error *err);

/* Probes. Each returns 0 when the feature works, < 0 with err filled otherwise. */
int rl_probe_userns(struct rl_error *err);
int rl_probe_openat2(struct rl_error *err);
int rl_probe_overlay(const char *lower, const char *upper, const char *work,
                     const char *merged, const char *extra_opts, struct rl_error *err);

/* Open `path` below the directory `rootfd` without leaving it (symlinks, "..",
 * absolute names all stay inside). Returns an fd, or -1 with errno set. */
int rl_openat_in_root(int rootfd, const char *path, int oflags);

const char *rl_version(void);
