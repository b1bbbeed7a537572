/* rl_spawn.c: clone a child into new namespaces and turn it into the container.
 *
 * Protocol over a SOCK_SEQPACKET pair (both ends CLOEXEC):
 *   parent -> child  RL_MSG_GO      after the parent wrote the id maps
 *   child  -> parent RL_MSG_PTY     (optional) the pty master, via SCM_RIGHTS
 *   child  -> parent RL_MSG_ERROR   a filled rl_error; the child then exits
 *   EOF                             execve succeeded (the child's end closed on exec)
 * After clone the child runs only this file's C: no malloc, no stdio, no Python. */
#include "rootless.h"

#include <dirent.h>
#include <stdlib.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

#define RL_MSG_GO 1
#define RL_MSG_ERROR 2
#define RL_MSG_PTY 3
#define RL_MSG_NOTIFY 4

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct rl_msg {
    int type;
    struct rl_error err;
};

static void send_msg(int sync, int type, const struct rl_error *err, int fd)
{
    struct rl_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    if (err != NULL)
        m.err = *err;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        memset(&u, 0, sizeof(u));
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof(u.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    while (sendmsg(sync, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static _Noreturn void child_fail(int sync, const struct rl_error *err, int code)
{
    send_msg(sync, RL_MSG_ERROR, err, -1);
    _exit(code);
}

/* Ignored signals survive execve (caught ones are reset by it): restore the defaults
 * for the classic signals, and unblock everything. */
static void reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < 32; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static int loopback_up(struct rl_error *err)
{
    RL_CLEANUP_CLOSE int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return rl_error_set(err, errno, RL_STAGE_NETWORK, "cannot open a socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    rl_strlcpy(ifr.ifr_name, "lo", sizeof(ifr.ifr_name));
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return rl_error_set(err, errno, RL_STAGE_NETWORK, "cannot read the loopback flags");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        return rl_error_set(err, errno, RL_STAGE_NETWORK, "cannot bring loopback up");
    return 0;
}

/* Allocate a pty in the container's devpts; hand the master to the parent. Returns the slave. */
static int make_pty(const struct rl_spawn_config *cfg, int sync, struct rl_error *err)
{
    RL_CLEANUP_CLOSE int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return rl_error_set(err, errno, RL_STAGE_PTY, "cannot open /dev/ptmx in the container");
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        return rl_error_set(err, errno, RL_STAGE_PTY, "cannot unlock the pty");
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        unsigned n = 0;
        char path[32] = "/dev/pts/";
        if (ioctl(master, TIOCGPTN, &n) < 0)
            return rl_error_set(err, errno, RL_STAGE_PTY, "cannot get the pty number");
        char digits[12];
        int k = 0;
        do {
            digits[k++] = (char)('0' + n % 10);
            n /= 10;
        } while (n != 0);
        size_t pos = strlen(path);
        while (k > 0)
            path[pos++] = digits[--k];
        path[pos] = '\0';
        slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0)
            return rl_error_set(err, errno, RL_STAGE_PTY, "cannot open %s", path);
    }
    if (cfg->tty_rows != 0 && cfg->tty_cols != 0) {
        struct winsize ws;
        memset(&ws, 0, sizeof(ws));
        ws.ws_row = cfg->tty_rows;
        ws.ws_col = cfg->tty_cols;
        ioctl(master, TIOCSWINSZ, &ws);
    }
    if (fchown(slave, cfg->uid, cfg->gid) < 0) {
        /* unmapped ids: the slave stays owned by container root, still usable via the fd */
    }
    send_msg(sync, RL_MSG_PTY, NULL, master);
    return slave;
}

static int setup_stdio(const struct rl_spawn_config *cfg, int slave, struct rl_error *err)
{
    if (setsid() < 0)
        return rl_error_set(err, errno, RL_STAGE_PTY, "setsid failed");
    if (slave >= 0) {
        if (ioctl(slave, TIOCSCTTY, 0) < 0)
            return rl_error_set(err, errno, RL_STAGE_PTY, "cannot set the controlling terminal");
        for (int i = 0; i < 3; i++)
            if (dup2(slave, i) < 0)
                return rl_error_set(err, errno, RL_STAGE_PTY, "dup2 of the pty failed");
        if (slave > 2)
            close(slave);
        return 0;
    }
    int moved[3];
    for (int i = 0; i < 3; i++) {
        moved[i] = fcntl(cfg->stdio[i], F_DUPFD_CLOEXEC, 10);
        if (moved[i] < 0)
            return rl_error_set(err, errno, RL_STAGE_EXEC, "stdio fd %d is not open", cfg->stdio[i]);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(moved[i], i) < 0)
            return rl_error_set(err, errno, RL_STAGE_EXEC, "dup2 failed");
        close(moved[i]);
    }
    return 0;
}

static int switch_user(const struct rl_spawn_config *cfg, struct rl_error *err)
{
    if (cfg->sflags & RL_SF_SETGROUPS) {
        if (setgroups(cfg->n_groups, (const gid_t *)cfg->groups) < 0)
            return rl_error_set(err, errno, RL_STAGE_USER, "setgroups failed");
    }
    if (setresgid(cfg->gid, cfg->gid, cfg->gid) < 0)
        return rl_error_set(err, errno, RL_STAGE_USER, "cannot switch to gid %u: it is not mapped in the user namespace", cfg->gid);
    if (setresuid(cfg->uid, cfg->uid, cfg->uid) < 0)
        return rl_error_set(err, errno, RL_STAGE_USER, "cannot switch to uid %u: it is not mapped in the user namespace", cfg->uid);
    return 0;
}

static const char *env_lookup(const char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; envp != NULL && *envp != NULL; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

/* execvpe without malloc, searching the container's PATH. Returns errno on failure. */
static int exec_command(const struct rl_spawn_config *cfg)
{
    const char *file = cfg->argv[0];
    char *const *argv = (char *const *)cfg->argv;
    char *const *envp = (char *const *)cfg->envp;
    if (file[0] == '\0')
        return ENOENT;
    if (strchr(file, '/') != NULL) {
        execve(file, argv, envp);
        return errno;
    }
    const char *path = env_lookup(cfg->envp, "PATH");
    if (path == NULL || path[0] == '\0')
        path = DEFAULT_PATH;
    int seen_eacces = 0;
    size_t flen = strlen(file);
    char buf[4096];
    for (const char *p = path;; p++) {
        const char *start = p;
        while (*p != '\0' && *p != ':')
            p++;
        size_t dlen = (size_t)(p - start);
        if (dlen == 0) {
            start = ".";
            dlen = 1;
        }
        if (dlen + 1 + flen + 1 <= sizeof(buf)) {
            memcpy(buf, start, dlen);
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, file, flen + 1);
            execve(buf, argv, envp);
            if (errno == EACCES)
                seen_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE)
                return errno;
        }
        if (*p == '\0')
            break;
    }
    return seen_eacces ? EACCES : ENOENT;
}

/* True when the PID namespace holds no process but us (PID 1): /proc is this
 * namespace's own proc mount. */
static int pidns_is_empty(void)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 1; /* no /proc to ask: behave like a plain init */
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end == '\0' && pid > 1) {
            empty = 0;
            break;
        }
    }
    closedir(d);
    return empty;
}

/* Field `n` (1-based) of /proc/self/stat as a number, or 0. */
static unsigned long stat_field(const char *buf, int n)
{
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL)
        return 0;
    for (int field = 2; field < n; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return 0;
    }
    unsigned long v = 0;
    for (p++; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (unsigned long)(*p - '0');
    return v;
}

/* PID 1 with --init is a copy of the runtime and never execs: its /proc/1/environ
 * and cmdline would show the runtime's (host) environment and command line to the
 * container. Overwrite them in our copy, and call ourselves rootless-init. (The rest
 * of the copied memory is kept from container root by PR_SET_DUMPABLE, in run_init.) */
static void hide_runtime_args_and_env(void)
{
    char buf[1024];
    RL_CLEANUP_CLOSE int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n <= 0)
        return;
    buf[n] = '\0';
    static const char name[] = "rootless-init";
    char *arg_start = (char *)stat_field(buf, 48), *arg_end = (char *)stat_field(buf, 49);
    char *env_start = (char *)stat_field(buf, 50), *env_end = (char *)stat_field(buf, 51);
    if (env_start != NULL && env_end > env_start)
        memset(env_start, 0, (size_t)(env_end - env_start));
    if (arg_start != NULL && arg_end > arg_start + sizeof(name)) {
        memset(arg_start, 0, (size_t)(arg_end - arg_start));
        memcpy(arg_start, name, sizeof(name));
    }
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

/* A tiny PID 1: run the command as its child, reap every zombie, forward signals,
 * and exit with the command's status (128+N when it was killed by signal N).
 * With RL_SF_LINGER it stays, after the command, until the namespace is empty. */
static _Noreturn void run_init(const struct rl_spawn_config *cfg, int sync)
{
    struct rl_error err;
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    /* Raw clone, not glibc's fork(): we share the caller's memory (CLONE_VM) and must
     * not run its atfork handlers or rewrite its thread descriptor. */
    pid_t child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (child < 0) {
        rl_error_set(&err, errno, RL_STAGE_INIT, "init: fork failed");
        child_fail(sync, &err, 125);
    }
    if (child == 0) {
        setpgid(0, 0);
        if (cfg->sflags & RL_SF_TTY)
            tcsetpgrp(0, getpid());
        sigprocmask(SIG_SETMASK, &old, NULL);
        int e = exec_command(cfg);
        rl_error_set(&err, e, RL_STAGE_EXEC, "%s", cfg->argv[0]);
        child_fail(sync, &err, e == ENOENT ? 127 : 126);
    }
    close(sync);
    /* PID 1 never execs, so close-on-exec does not protect it: close every fd it got
     * from the runtime (locks, the store), or the container could open them through
     * /proc/1/fd (the runc CVE-2024-21626 class). */
    syscall(SYS_close_range, 3U, ~0U, 0U);
    hide_runtime_args_and_env();
    /* The rest of our memory is a copy of the runtime's. Not dumpable, with our mm
     * still owned by the host's user namespace (we never exec), container root cannot
     * ptrace us or read /proc/1/mem, maps or environ (ptrace_may_access wants
     * CAP_SYS_PTRACE in the mm's user namespace). The command was forked before this. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    const int linger = (cfg->sflags & RL_SF_LINGER) != 0;
    int code = -1; /* the command's exit code, once it has exited */
    for (;;) {
        siginfo_t info;
        int sig;
        if (code >= 0) {
            /* Joined processes are not our children until they are orphaned: poll. */
            struct timespec tick = {0, 50 * 1000 * 1000};
            sig = sigtimedwait(&all, &info, &tick);
        } else {
            sig = sigwaitinfo(&all, &info);
        }
        if (sig > 0 && sig != SIGCHLD) {
            kill(linger ? -1 : child, sig);
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid != child)
                continue;
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (!linger)
                _exit(code);
        }
        if (code >= 0 && pidns_is_empty())
            _exit(code);
    }
}

struct child_args {
    const struct rl_spawn_config *cfg;
    int sync;        /* the child's end */
    int parent_end;  /* closed in the child */
};

/* Both children start the same way: default signals, die with the parent, and
 * wait until the parent says go (it writes the id maps first). */
static void child_wait_for_go(int sync)
{
    struct rl_msg m;
    reset_signals();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    ssize_t n;
    do
        n = recv(sync, &m, sizeof(m), 0);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(m) || m.type != RL_MSG_GO)
        _exit(125);
}

/* And end the same way: the terminal, the user, the working directory, no_new_privs,
 * root emulation, and every fd above 2 closed on exec. */
static void child_prepare_exec(const struct rl_spawn_config *cfg, int sync, int create_cwd)
{
    struct rl_error err;
    memset(&err, 0, sizeof(err));
    int slave = -1;
    if ((cfg->sflags & RL_SF_TTY) && (slave = make_pty(cfg, sync, &err)) < 0)
        child_fail(sync, &err, 125);
    if (setup_stdio(cfg, slave, &err) < 0)
        child_fail(sync, &err, 125);
    if (create_cwd && cfg->cwd != NULL && cfg->cwd[0] != '\0') {
        /* Like docker: a missing working directory is created (best effort). */
        RL_CLEANUP_CLOSE int rfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        int fd = rfd >= 0 ? rl_mkdir_in_root(rfd, cfg->cwd, 0755) : -1;
        if (fd >= 0)
            close(fd);
    }
    if (switch_user(cfg, &err) < 0)
        child_fail(sync, &err, 125);
    /* The working directory is resolved inside the root, magic links refused: a
     * `-w /proc/self/fd/N` (or an image's WorkingDir) naming one of our inherited
     * fds must not put the process in a host directory (runc CVE-2024-21626). */
    if (cfg->cwd != NULL && cfg->cwd[0] != '\0') {
        RL_CLEANUP_CLOSE int rfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        RL_CLEANUP_CLOSE int cfd = rfd >= 0 ? rl_open_in_root(rfd, cfg->cwd, O_PATH | O_DIRECTORY, 0) : -1;
        if (cfd < 0 || fchdir(cfd) < 0) {
            rl_error_set(&err, errno, RL_STAGE_CWD, "cannot change to the working directory %s", cfg->cwd);
            child_fail(sync, &err, 126);
        }
    }
    if ((cfg->sflags & RL_SF_NO_NEW_PRIVS) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        rl_error_set(&err, errno, RL_STAGE_EXEC, "cannot set no_new_privs");
        child_fail(sync, &err, 125);
    }
    if ((cfg->sflags & RL_SF_SECCOMP) && rl_install_default_seccomp(&err) < 0)
        child_fail(sync, &err, 125);
    if (cfg->sflags & RL_SF_FAKEROOT) {
        int listener = -1;
        if (rl_install_fakeroot(cfg->sflags & RL_SF_FAKEROOT_RECORD ? 1 : 0, &listener, &err) < 0)
            child_fail(sync, &err, 125);
        if (listener >= 0) {
            send_msg(sync, RL_MSG_NOTIFY, NULL, listener);
            close(listener);
        }
    }
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
}

static _Noreturn void child_main(const struct rl_spawn_config *cfg, int sync)
{
    struct rl_error err;
    memset(&err, 0, sizeof(err));
    child_wait_for_go(sync);
    if ((cfg->sflags & RL_SF_NEWNET) && loopback_up(&err) < 0)
        child_fail(sync, &err, 125);
    if (rl_build_root(cfg, &err) < 0)
        child_fail(sync, &err, 125);
    if (cfg->hostname != NULL && cfg->hostname[0] != '\0' &&
        sethostname(cfg->hostname, strlen(cfg->hostname)) < 0) {
        rl_error_set(&err, errno, RL_STAGE_HOSTNAME, "cannot set the hostname");
        child_fail(sync, &err, 125);
    }
    child_prepare_exec(cfg, sync, 1);
    if (cfg->sflags & RL_SF_INIT)
        run_init(cfg, sync);
    int e = exec_command(cfg);
    rl_error_set(&err, e, RL_STAGE_EXEC, "%s", cfg->argv[0]);
    child_fail(sync, &err, e == ENOENT ? 127 : 126);
}

static int child_entry(void *arg)
{
    struct child_args *a = arg;
    close(a->parent_end);
    child_main(a->cfg, a->sync);
}

#define CHILD_STACK_SIZE (1024 * 1024)

/* The child shares our address space (CLONE_VM, like posix_spawn) until it execs
 * (except with RL_SF_INIT, see below):
 * no copy of the caller's page tables, and execve has no big address space to tear
 * down. It runs on its own stack and touches only that stack and the read-only
 * config; it never returns into the caller's code. */
static int open_ns(char *path, size_t cap, const char *pid, const char *name)
{
    size_t pos = rl_strlcpy(path, "/proc/", cap);
    pos += rl_strlcpy(path + pos, pid, cap - pos);
    pos += rl_strlcpy(path + pos, "/ns/", cap - pos);
    rl_strlcpy(path + pos, name, cap - pos);
    return open(path, O_RDONLY | O_CLOEXEC);
}

static int join_namespaces(int target_pid, struct rl_error *err)
{
    static const char *const names[] = {"user", "mnt", "ipc", "uts", "net", "pid"};
    int fds[6];
    struct stat theirs[6], ours[6];
    char path[64], pid[16];
    int n = 0;
    char digits[16];
    unsigned v = (unsigned)target_pid;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (int k = 0; k < n; k++)
        pid[k] = digits[n - 1 - k];
    pid[n] = '\0';
    /* Open everything first: once we are in the container's mount namespace,
     * /proc is the container's. */
    for (int i = 0; i < 6; i++) {
        fds[i] = open_ns(path, sizeof(path), pid, names[i]);
        if (fds[i] < 0 || fstat(fds[i], &theirs[i]) < 0)
            return rl_error_set(err, errno, RL_STAGE_JOIN, "cannot open %s: is the container running?", path);
        int own = open_ns(path, sizeof(path), "self", names[i]);
        if (own < 0 || fstat(own, &ours[i]) < 0)
            return rl_error_set(err, errno, RL_STAGE_JOIN, "cannot open %s", path);
        close(own);
    }
    for (int i = 0; i < 6; i++) {
        /* A namespace the container shares with us (the host network) is not joined:
         * we are already in it, and setns would need privileges over it. */
        int same = theirs[i].st_ino == ours[i].st_ino && theirs[i].st_dev == ours[i].st_dev;
        if (!same && setns(fds[i], 0) < 0)
            return rl_error_set(err, errno, RL_STAGE_JOIN, "cannot join the container's %s namespace", names[i]);
        close(fds[i]);
    }
    return 0;
}

static _Noreturn void exec_child_main(int target_pid, const struct rl_spawn_config *cfg, int sync)
{
    struct rl_error err;
    memset(&err, 0, sizeof(err));
    child_wait_for_go(sync);
    if (join_namespaces(target_pid, &err) < 0)
        child_fail(sync, &err, 125);
    /* Our memory and fds are the runtime's until the command execs: the command's
     * parent (outside the PID namespace) and the command itself until execve are
     * not dumpable, so container processes cannot ptrace them or open their
     * /proc/<pid>/fd (runc CVE-2016-9962). execve makes the command dumpable again. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    child_prepare_exec(cfg, sync, 0);
    /* setns(pid) only moves our children: run the command as a child, like --init. */
    run_init(cfg, sync);
}

int rl_exec(int target_pid, const struct rl_spawn_config *cfg, struct rl_child *out, struct rl_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return rl_error_set(err, errno, RL_STAGE_SYNC, "socketpair failed");
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        int saved = errno;
        close(sv[0]);
        close(sv[1]);
        return rl_error_set(err, saved, RL_STAGE_CLONE, "cannot fork");
    }
    if (pid == 0) {
        close(sv[0]);
        exec_child_main(target_pid, cfg, sv[1]);
    }
    close(sv[1]);
    out->pid = (int)pid;
    out->sync_fd = sv[0];
    out->pty_fd = -1;
    out->notify_fd = -1;
    out->stack = NULL;
    out->stack_size = 0;
    out->cfg = NULL;
    return 0;
}

int rl_spawn(const struct rl_spawn_config *cfg, struct rl_child *out, struct rl_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return rl_error_set(err, errno, RL_STAGE_SYNC, "socketpair failed");
    void *stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        int saved = errno;
        close(sv[0]);
        close(sv[1]);
        return rl_error_set(err, saved, RL_STAGE_CLONE, "cannot allocate the child stack");
    }
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    /* With --init the child stays alive as PID 1 after exec'ing its worker, so it
     * gets its own copy of our memory instead of sharing it. */
    if (!(cfg->sflags & RL_SF_INIT))
        flags |= CLONE_VM;
    if (cfg->sflags & RL_SF_NEWNET)
        flags |= CLONE_NEWNET;
    /* The arguments live at the top of the child's stack, out of the caller's way. */
    struct child_args *args = (struct child_args *)((char *)stack + CHILD_STACK_SIZE - 4096);
    args->cfg = cfg;
    args->sync = sv[1];
    args->parent_end = sv[0];
    int pid = clone(child_entry, (char *)stack + CHILD_STACK_SIZE - 8192, flags | SIGCHLD, args);
    int saved = errno;
    close(sv[1]); /* the child has its own fd table (no CLONE_FILES) */
    if (pid < 0) {
        close(sv[0]);
        munmap(stack, CHILD_STACK_SIZE);
        return rl_error_set(err, saved, RL_STAGE_CLONE, "cannot create the namespaces");
    }
    out->pid = pid;
    out->sync_fd = sv[0];
    out->pty_fd = -1;
    out->notify_fd = -1;
    out->stack = stack;
    out->stack_size = CHILD_STACK_SIZE;
    out->cfg = cfg;
    return 0;
}

void rl_release(struct rl_child *child)
{
    if (child->stack != NULL) {
        munmap(child->stack, child->stack_size);
        child->stack = NULL;
    }
}

static ssize_t recv_msg(int fd, struct rl_msg *m, int *passed_fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    ssize_t n;
    do
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *passed_fd = -1;
    if (n > 0) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                memcpy(passed_fd, CMSG_DATA(c), sizeof(int));
    }
    return n;
}

int rl_continue(struct rl_child *child, struct rl_error *err)
{
    struct rl_msg m;
    memset(&m, 0, sizeof(m));
    m.type = RL_MSG_GO;
    if (rl_run_helpers(child->pid, child->cfg, err) < 0) {
        rl_abort(child); /* the child sees EOF and exits */
        return -1;
    }
    if (send(child->sync_fd, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
        return rl_error_set(err, errno, RL_STAGE_SYNC, "the container process went away before it started");
    for (;;) {
        int fd;
        ssize_t n = recv_msg(child->sync_fd, &m, &fd);
        if (n == 0)
            break;
        if (n < 0)
            return rl_error_set(err, errno, RL_STAGE_SYNC, "lost the container process");
        if (m.type == RL_MSG_PTY && fd >= 0) {
            if (child->pty_fd >= 0)
                close(child->pty_fd);
            child->pty_fd = fd;
        } else if (m.type == RL_MSG_NOTIFY && fd >= 0) {
            if (child->notify_fd >= 0)
                close(child->notify_fd);
            child->notify_fd = fd;
        } else if (m.type == RL_MSG_ERROR) {
            if (fd >= 0)
                close(fd);
            *err = m.err;
            close(child->sync_fd);
            child->sync_fd = -1;
            errno = err->errnum;
            return -1;
        }
    }
    close(child->sync_fd);
    child->sync_fd = -1;
    return 0;
}

void rl_abort(struct rl_child *child)
{
    if (child->sync_fd >= 0) {
        close(child->sync_fd);
        child->sync_fd = -1;
    }
}
