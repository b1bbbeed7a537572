/* plan.c: read, check and carry out a run plan (see rootless/runtime/plan.py).
 *
 * File: "RLPLAN1\n", then records of 1 tag byte, a 4-byte little-endian length and
 * that many bytes. Integers are 8-byte little-endian; strings end with NUL.
 *
 *   V version            the package version that wrote it (must be RL_VERSION)
 *   K key                the exact key material (see main.c build_key)
 *   N nodename           uname's nodename when it was written
 *   e NAME=VALUE / NAME  an environment variable the run read, and its value (or unset)
 *   Y q[1]               the run read the whole environment: its hash (main.c rl_env_hash)
 *   S q[7] path          a file the plan depends on: kind (0 absent, 1 unchanged, 2 the
 *                        same file), dev, ino, mode, size, mtime ns, ctime ns (stat,
 *                        following links)
 *   F q[2]               spawn flags, interactive (stdin kept)
 *   R rootfs  C cwd  H hostname  A argv (one each)  E env (one each)
 *   U q[2] uid, gid      G q[1] a supplementary group (one each)
 *   M q[4] + 4 × (1 byte present, string)  a mount op: op, mflags, flags, mode,
 *                        source, target, fstype, data
 *   I q[2]               id maps written directly (0) or by newuidmap/newgidmap (1);
 *                        deny setgroups
 *   u q[3] / g q[3]      one uid / gid map line
 *   P path  Q path       newuidmap, newgidmap
 *   For `run --rm IMAGE` (container.c): T template id, D <root>/containers,
 *   d <runroot>/containers, L <root>/store.lock, J config.json prefix, n --name,
 *   a adjectives, s surnames, W name text (a file of the run directory)
 *   A shape plan (its key holds only the leading arguments) has X q[1] (1: the
 *   command's first word must not start with a dash) and, for an image, j: the
 *   config.json after the command's arguments, which go between J and j.
 *   Z                    end
 *
 * Anything unexpected makes the plan unusable (-1): the Python CLI then runs the
 * command and rewrites the plan.
 */
#include "launcher.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>

extern char **environ;

#define PLAN_MAGIC "RLPLAN1\n"
#define PLAN_MAX_SIZE (4 << 20)
#define MAX_MAPS 340

struct rec {
    char tag;
    const char *p;
    uint32_t len;
};

struct reader {
    const char *data;
    size_t size;
    size_t pos;
};

static int next_rec(struct reader *r, struct rec *out)
{
    if (r->pos == r->size)
        return 0;
    if (r->size - r->pos < 5)
        return -1;
    out->tag = r->data[r->pos];
    memcpy(&out->len, r->data + r->pos + 1, 4);
    r->pos += 5;
    if (out->len > r->size - r->pos)
        return -1;
    out->p = r->data + r->pos;
    r->pos += out->len;
    return 1;
}

static int64_t q_at(const struct rec *rc, size_t i)
{
    int64_t v;
    memcpy(&v, rc->p + 8 * i, 8);
    return v;
}

/* A NUL-terminated string that fills the record exactly from `off`. */
static const char *str_at(const struct rec *rc, size_t off)
{
    if (rc->len <= off || rc->p[rc->len - 1] != '\0' || memchr(rc->p + off, '\0', rc->len - off) !=
                                                            rc->p + rc->len - 1)
        return NULL;
    return rc->p + off;
}

/* An optional string inside a mount record; advances *off. */
static int opt_str(const struct rec *rc, size_t *off, const char **out)
{
    if (*off >= rc->len)
        return -1;
    char present = rc->p[(*off)++];
    if (!present) {
        *out = NULL;
        return 0;
    }
    const char *end = memchr(rc->p + *off, '\0', rc->len - *off);
    if (end == NULL)
        return -1;
    *out = rc->p + *off;
    *off = (size_t)(end - rc->p) + 1;
    return 0;
}

static int stamp_holds(const struct rec *rc)
{
    if (rc->len < 7 * 8 + 1)
        return 0;
    const char *path = str_at(rc, 7 * 8);
    if (path == NULL)
        return 0;
    struct stat st;
    int present = stat(path, &st) == 0;
    if (!present)
        return q_at(rc, 0) == 0 && (errno == ENOENT || errno == ENOTDIR);
    if (q_at(rc, 0) == 2) /* which file, not its content (a bound directory, a root) */
        return q_at(rc, 1) == (int64_t)st.st_dev && q_at(rc, 2) == (int64_t)st.st_ino &&
               q_at(rc, 3) == (int64_t)st.st_mode;
    return q_at(rc, 0) == 1 && q_at(rc, 1) == (int64_t)st.st_dev && q_at(rc, 2) == (int64_t)st.st_ino &&
           q_at(rc, 3) == (int64_t)st.st_mode && q_at(rc, 4) == (int64_t)st.st_size &&
           q_at(rc, 5) == (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec &&
           q_at(rc, 6) == (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
}

struct plan {
    struct rl_spawn_config cfg;
    const char **argv;
    const char **envp;
    uint32_t *groups;
    struct rl_mount *mounts;
    struct rl_idmap uids[MAX_MAPS];
    struct rl_idmap gids[MAX_MAPS];
    size_t n_uids, n_gids;
    int helpers, deny_setgroups, interactive;
    const char *newuidmap, *newgidmap;
    int is_ctr; /* a `run --rm IMAGE`: a container record to make and remove */
    struct rl_ctr_plan ctr;
    const char *data;
    size_t size;
};

/* Check the plan against this invocation and fill `pl`; 0 or -1 with *why set. */
static int load(struct plan *pl, const char *data, size_t size, const struct rl_buf *key,
                char **tail, int n_tail, const char **why)
{
    struct reader r = {data, size, strlen(PLAN_MAGIC)};
    struct rec rc;
    size_t n_argv = 0, n_env = 0, n_groups = 0, n_mounts = 0;
    int have_key = 0, have_version = 0, have_end = 0, n;
    *why = "malformed";
    if (size < r.pos || memcmp(data, PLAN_MAGIC, r.pos) != 0)
        return -1;
    /* First pass: the fixed checks, and how much to allocate. */
    while ((n = next_rec(&r, &rc)) > 0) {
        switch (rc.tag) {
        case 'V':
            if (str_at(&rc, 0) == NULL || strcmp(rc.p, RL_VERSION) != 0) {
                *why = "written by another version";
                return -1;
            }
            have_version = 1;
            break;
        case 'K':
            if (rc.len != key->len || memcmp(rc.p, key->data, key->len) != 0) {
                *why = "written for another command line";
                return -1;
            }
            have_key = 1;
            break;
        case 'N': {
            struct utsname u;
            if (str_at(&rc, 0) == NULL || uname(&u) < 0 || strcmp(rc.p, u.nodename) != 0) {
                *why = "the host name changed";
                return -1;
            }
            break;
        }
        case 'S':
            if (!stamp_holds(&rc)) {
                *why = "a file it depends on changed";
                return -1;
            }
            break;
        case 'e': { /* a variable the run read: NAME=VALUE, or NAME when it was unset */
            const char *var = str_at(&rc, 0);
            const char *eq = var ? strchr(var, '=') : NULL;
            char name[256];
            size_t len = eq ? (size_t)(eq - var) : (var ? strlen(var) : 0);
            if (var == NULL || len == 0 || len >= sizeof(name))
                return -1;
            memcpy(name, var, len);
            name[len] = '\0';
            const char *now = getenv(name);
            if (eq == NULL ? now != NULL : (now == NULL || strcmp(now, eq + 1) != 0)) {
                *why = "an environment variable it read changed";
                return -1;
            }
            break;
        }
        case 'Y': /* the run read the whole environment */
            if (rc.len != 8 || (uint64_t)q_at(&rc, 0) != rl_env_hash()) {
                *why = "the environment changed";
                return -1;
            }
            break;
        case 'A': n_argv++; break;
        case 'E': n_env++; break;
        case 'G': n_groups++; break;
        case 'M': n_mounts++; break;
        case 'Z': have_end = 1; break;
        default: break;
        }
    }
    if (n < 0 || !have_key || !have_version || !have_end || n_argv + (size_t)n_tail == 0)
        return -1;
    pl->argv = calloc(n_argv + (size_t)n_tail + 1, sizeof(char *));
    pl->envp = calloc(n_env + 1, sizeof(char *));
    pl->groups = calloc(n_groups + 1, sizeof(uint32_t));
    pl->mounts = calloc(n_mounts + 1, sizeof(struct rl_mount));
    if (pl->argv == NULL || pl->envp == NULL || pl->groups == NULL || pl->mounts == NULL) {
        *why = "out of memory";
        return -1;
    }
    struct rl_spawn_config *c = &pl->cfg;
    c->argv = pl->argv;
    c->envp = pl->envp;
    c->groups = pl->groups;
    c->mounts = pl->mounts;
    c->cwd = "/";
    c->hostname = "";
    c->stdio[0] = 0;
    c->stdio[1] = 1;
    c->stdio[2] = 2;
    size_t ia = 0, ie = 0;
    int have_ids = 0, have_flags = 0, have_idmode = 0, shape = 0, first_not_option = 0;
    r.pos = strlen(PLAN_MAGIC);
    while (next_rec(&r, &rc) > 0) {
        switch (rc.tag) {
        case 'F':
            if (rc.len != 16)
                return -1;
            c->sflags = (int)q_at(&rc, 0);
            pl->interactive = q_at(&rc, 1) != 0;
            have_flags = 1;
            break;
        case 'R': if ((c->rootfs = str_at(&rc, 0)) == NULL) return -1; break;
        case 'C': if ((c->cwd = str_at(&rc, 0)) == NULL) return -1; break;
        case 'H': if ((c->hostname = str_at(&rc, 0)) == NULL) return -1; break;
        case 'A': if ((pl->argv[ia++] = str_at(&rc, 0)) == NULL) return -1; break;
        case 'E': if ((pl->envp[ie++] = str_at(&rc, 0)) == NULL) return -1; break;
        case 'P': if ((pl->newuidmap = str_at(&rc, 0)) == NULL) return -1; break;
        case 'Q': if ((pl->newgidmap = str_at(&rc, 0)) == NULL) return -1; break;
        case 'U':
            if (rc.len != 16)
                return -1;
            c->uid = (uint32_t)q_at(&rc, 0);
            c->gid = (uint32_t)q_at(&rc, 1);
            have_ids = 1;
            break;
        case 'G':
            if (rc.len != 8)
                return -1;
            pl->groups[c->n_groups++] = (uint32_t)q_at(&rc, 0);
            break;
        case 'I':
            if (rc.len != 16)
                return -1;
            pl->helpers = q_at(&rc, 0) != 0;
            pl->deny_setgroups = q_at(&rc, 1) != 0;
            have_idmode = 1;
            break;
        case 'u':
        case 'g': {
            struct rl_idmap *maps = rc.tag == 'u' ? pl->uids : pl->gids;
            size_t *count = rc.tag == 'u' ? &pl->n_uids : &pl->n_gids;
            if (rc.len != 24 || *count >= MAX_MAPS)
                return -1;
            maps[*count].inside = (uint32_t)q_at(&rc, 0);
            maps[*count].outside = (uint32_t)q_at(&rc, 1);
            maps[*count].count = (uint32_t)q_at(&rc, 2);
            (*count)++;
            break;
        }
        case 'M': {
            struct rl_mount *m = &pl->mounts[c->n_mounts];
            size_t off = 32;
            if (rc.len < off)
                return -1;
            m->op = (int)q_at(&rc, 0);
            m->mflags = (int)q_at(&rc, 1);
            m->flags = (unsigned long)q_at(&rc, 2);
            m->mode = (unsigned int)q_at(&rc, 3);
            m->argv = NULL;
            if (m->op == RL_OP_HELPER)
                return -1; /* never planned: a FUSE daemon needs the Python CLI's bookkeeping */
            if (opt_str(&rc, &off, &m->source) < 0 || opt_str(&rc, &off, &m->target) < 0 ||
                opt_str(&rc, &off, &m->fstype) < 0 || opt_str(&rc, &off, &m->data) < 0 ||
                off != rc.len || m->target == NULL)
                return -1;
            c->n_mounts++;
            break;
        }
        case 'X': /* a shape plan: the command comes from this invocation */
            if (rc.len != 8)
                return -1;
            shape = 1;
            first_not_option = q_at(&rc, 0) != 0;
            break;
        case 'j': if ((pl->ctr.config_suffix = str_at(&rc, 0)) == NULL) return -1; break;
        case 'T':
            if ((pl->ctr.template_id = str_at(&rc, 0)) == NULL || strlen(rc.p) != 64)
                return -1;
            pl->is_ctr = 1;
            break;
        case 'D': if ((pl->ctr.containers_dir = str_at(&rc, 0)) == NULL) return -1; break;
        case 'd': if ((pl->ctr.run_containers_dir = str_at(&rc, 0)) == NULL) return -1; break;
        case 'L': if ((pl->ctr.store_lock = str_at(&rc, 0)) == NULL) return -1; break;
        case 'J': if ((pl->ctr.config_prefix = str_at(&rc, 0)) == NULL) return -1; break;
        case 'n': if ((pl->ctr.fixed_name = str_at(&rc, 0)) == NULL) return -1; break;
        case 'a': if ((pl->ctr.adjectives = str_at(&rc, 0)) == NULL) return -1; break;
        case 's': if ((pl->ctr.surnames = str_at(&rc, 0)) == NULL) return -1; break;
        case 'W': {
            const char *name_end = memchr(rc.p, '\0', rc.len);
            if (name_end == NULL || pl->ctr.n_files >= 8)
                return -1;
            size_t off = (size_t)(name_end - rc.p) + 1;
            const char *text = str_at(&rc, off);
            if (text == NULL || strchr(rc.p, '/') != NULL || rc.p[0] == '\0' || rc.p[0] == '.')
                return -1;
            pl->ctr.files[pl->ctr.n_files].name = rc.p;
            pl->ctr.files[pl->ctr.n_files].text = text;
            pl->ctr.n_files++;
            break;
        }
        case 'V': case 'K': case 'N': case 'S': case 'Z': case 'e': case 'Y':
            break;
        default:
            return -1;
        }
    }
    for (size_t i = 0; i < c->n_mounts; i++)
        if (pl->mounts[i].op == RL_OP_OVERLAY && !pl->is_ctr)
            return -1;
    if (shape != (tail != NULL) || (shape && n_tail < 1) || (pl->is_ctr && shape != (pl->ctr.config_suffix != NULL))) {
        *why = "not for this command";
        return -1;
    }
    if (shape) {
        /* after --rootfs DIR's options, a first word with a dash would be an option */
        if (first_not_option && tail[0][0] == '-') {
            *why = "the command starts with a dash";
            return -1;
        }
        for (int i = 0; i < n_tail; i++) {
            for (const char *ch = tail[i]; pl->is_ctr && *ch; ch++)
                if (*ch < 0x20 || *ch > 0x7e) {
                    *why = "the command is not printable ASCII"; /* config.json would need escapes */
                    return -1;
                }
            pl->argv[ia++] = tail[i];
        }
        pl->ctr.tail = tail;
        pl->ctr.n_tail = n_tail;
    }
    if (pl->is_ctr && (pl->ctr.containers_dir == NULL || pl->ctr.run_containers_dir == NULL ||
                       pl->ctr.store_lock == NULL || pl->ctr.config_prefix == NULL ||
                       pl->ctr.adjectives == NULL || pl->ctr.surnames == NULL))
        return -1;
    if (c->rootfs == NULL || !have_ids || !have_flags || !have_idmode || pl->n_uids == 0 ||
        pl->n_gids == 0 || (pl->helpers && (pl->newuidmap == NULL || pl->newgidmap == NULL)))
        return -1;
    /* Never from a plan: what needs the Python CLI watching (a pty, fakeroot's
     * chown supervisor, --sharens). */
    if (c->sflags & (RL_SF_TTY | RL_SF_FAKEROOT | RL_SF_FAKEROOT_RECORD | RL_SF_LINGER))
        return -1;
    *why = "";
    return 0;
}

/* ---- carrying it out ---------------------------------------------------- */

static volatile sig_atomic_t child_pid;
static volatile sig_atomic_t got_signal;
static double kill_grace = 10.0;

static void forward_signal(int sig)
{
    int saved = errno;
    if (child_pid > 0) {
        kill((pid_t)child_pid, sig);
        if ((sig == SIGTERM || sig == SIGINT || sig == SIGHUP) && kill_grace > 0) {
            struct itimerval it;
            memset(&it, 0, sizeof(it));
            it.it_value.tv_sec = (time_t)kill_grace;
            it.it_value.tv_usec = (suseconds_t)((kill_grace - (double)(time_t)kill_grace) * 1e6);
            setitimer(ITIMER_REAL, &it, NULL);
        }
    }
    got_signal = sig;
    errno = saved;
}

static void kill_child(int sig)
{
    (void)sig;
    if (child_pid > 0)
        kill((pid_t)child_pid, SIGKILL);
}

/* As the Python CLI's SignalForwarder (rootless/runtime/runner.py). */
static void forward_signals(void)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT};
    const char *grace = getenv("ROOTLESS_KILL_GRACE");
    if (grace != NULL && grace[0] != '\0')
        kill_grace = strtod(grace, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    sa.sa_handler = kill_child;
    sigaction(SIGALRM, &sa, NULL);
}

static int wait_status(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 125;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 125;
}

static pid_t spawn_map_helper(const char *path, const char *name, pid_t pid, const struct rl_idmap *m,
                              size_t n)
{
    char *argv[3 + 3 * MAX_MAPS + 1];
    char nums[(2 + 3 * MAX_MAPS) * 12];
    size_t used = 0, argc = 0;
    argv[argc++] = (char *)name;
    argv[argc] = nums + used;
    used += (size_t)snprintf(nums + used, sizeof(nums) - used, "%d", (int)pid) + 1;
    argc++;
    for (size_t i = 0; i < n; i++) {
        uint32_t v[3] = {m[i].inside, m[i].outside, m[i].count};
        for (int k = 0; k < 3; k++) {
            argv[argc++] = nums + used;
            used += (size_t)snprintf(nums + used, sizeof(nums) - used, "%u", v[k]) + 1;
        }
    }
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    pid_t helper;
    int rc = posix_spawn(&helper, path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? helper : -1;
}

static int write_maps(const struct plan *pl, pid_t pid)
{
    if (!pl->helpers) {
        struct rl_error err;
        return rl_set_idmap(pid, pl->uids, pl->n_uids, pl->gids, pl->n_gids, pl->deny_setgroups, &err);
    }
    /* newuidmap and newgidmap side by side, as the Python CLI does */
    pid_t u = spawn_map_helper(pl->newuidmap, "newuidmap", pid, pl->uids, pl->n_uids);
    pid_t g = spawn_map_helper(pl->newgidmap, "newgidmap", pid, pl->gids, pl->n_gids);
    int ok = u > 0 && g > 0;
    if (u > 0 && wait_status(u) != 0)
        ok = 0;
    if (g > 0 && wait_status(g) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* The stamps again, under the store lock (container.c). */
static int stamps_hold(void *arg)
{
    const struct plan *pl = arg;
    struct reader r = {pl->data, pl->size, strlen(PLAN_MAGIC)};
    struct rec rc;
    while (next_rec(&r, &rc) > 0)
        if (rc.tag == 'S' && !stamp_holds(&rc))
            return 0;
    return 1;
}

/* Undo a container record that never ran its command; 128+signal if we were told
 * to stop meanwhile, else -1 (the caller runs the Python CLI instead). */
static int abandon(struct plan *pl, int devnull, const char *why)
{
    rl_plan_say("failed", why);
    if (pl->is_ctr)
        rl_ctr_remove(&pl->ctr, 0, NULL, NULL);
    if (devnull >= 0)
        close(devnull);
    return got_signal ? 128 + got_signal : RL_PLAN_UNUSABLE;
}

static int map_job_ids(void *arg, int pid)
{
    return write_maps(arg, pid);
}

static int start(struct plan *pl, const char *path)
{
    struct rl_spawn_config *c = &pl->cfg;
    int devnull = -1;
    forward_signals(); /* first: a ^C while the record is made must not leave it behind */
    if (!pl->interactive) {
        devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0)
            return RL_PLAN_UNUSABLE;
        c->stdio[0] = devnull;
    }
    if (pl->is_ctr && rl_ctr_create(&pl->ctr, stamps_hold, pl) < 0)
        return abandon(pl, devnull, "cannot make the container record");
    if (got_signal)
        return abandon(pl, devnull, "interrupted");
    struct rl_child child;
    struct rl_error err;
    memset(&err, 0, sizeof(err));
    if (rl_spawn(c, &child, &err) < 0)
        return abandon(pl, devnull, err.msg);
    child_pid = child.pid;
    if (pl->is_ctr) {
        char ns[64];
        snprintf(ns, sizeof(ns), "/proc/%d/ns/mnt", child.pid);
        pl->ctr.hold_fd = open(ns, O_RDONLY | O_CLOEXEC);
    }
    if (write_maps(pl, child.pid) < 0) {
        rl_abort(&child);
        child_pid = 0;
        wait_status(child.pid);
        rl_release(&child);
        return abandon(pl, devnull, "cannot write the id maps");
    }
    if (rl_continue(&child, &err) < 0) {
        /* The command never ran: the Python CLI redoes the run and says what is wrong. */
        child_pid = 0;
        wait_status(child.pid);
        rl_release(&child);
        unlink(path);
        return abandon(pl, devnull, err.msg);
    }
    rl_release(&child);
    if (devnull >= 0)
        close(devnull);
    if (pl->is_ctr)
        rl_ctr_started(&pl->ctr, child.pid);
    int status = wait_status(child.pid);
    child_pid = 0;
    if (pl->is_ctr && rl_ctr_remove(&pl->ctr, 1, pl->helpers ? map_job_ids : NULL, pl) < 0)
        fprintf(stderr, "rootless: warning: could not remove container %s: %s (remove it with "
                        "`rootless rm -f %s`)\n", pl->ctr.name, strerror(errno), pl->ctr.name);
    return status;
}

int rl_plan_run(const char *path, const struct rl_buf *key, char **tail, int n_tail)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return RL_PLAN_NONE;
        rl_plan_say("miss", strerror(errno));
        return RL_PLAN_UNUSABLE;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 022) ||
        st.st_size <= 0 || st.st_size > PLAN_MAX_SIZE) {
        close(fd);
        rl_plan_say("ignored", "not a private plan file of this user");
        return RL_PLAN_UNUSABLE;
    }
    size_t size = (size_t)st.st_size;
    char *data = malloc(size);
    size_t got = 0;
    while (data != NULL && got < size) {
        ssize_t n = read(fd, data + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (data == NULL || got != size) {
        free(data);
        rl_plan_say("miss", "cannot read it");
        return RL_PLAN_UNUSABLE;
    }
    static struct plan pl; /* the child shares this memory until it has exec'ed */
    const char *why;
    pl.data = data;
    pl.size = size;
    pl.ctr.hold_fd = -1;
    if (load(&pl, data, size, key, tail, n_tail, &why) < 0) {
        rl_plan_say("stale", why);
        return RL_PLAN_UNUSABLE; /* data stays allocated: the process execs Python next */
    }
    if (pl.is_ctr) {
        char old[65];
        memcpy(old, pl.ctr.template_id, 65);
        if (rl_ctr_new_id(pl.ctr.id) < 0)
            return RL_PLAN_UNUSABLE;
        rl_ctr_retemplate(data, size, old, pl.ctr.id);
    }
    rl_plan_say("hit", path);
    return start(&pl, path);
}
