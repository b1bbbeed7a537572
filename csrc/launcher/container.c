/* container.c: the container record of a planned `run --rm IMAGE` (plan.c).
 *
 * The same files the Python CLI writes (rootless/runtime/containers.py), so that
 * `ps`, `exec`, `stop`, `top` and `rm -f` see and reach the container while it
 * runs, and the same removal when it has exited:
 *
 *   <root>/store.lock                      shared while the record is made (rmi's sweep
 *                                          takes it exclusively)
 *   <root>/containers/.names/<name>        the name, reserved with O_EXCL
 *   <root>/containers/<id>/config.json     the plan's config with id, name, created
 *   <root>/containers/<id>/lock, upper/ work/ merged/
 *   <runroot>/containers/<id>/state.json   pid and start times; hosts, hostname, resolv.conf
 *
 * The plan was written for one container id (its template); every string of the
 * plan that holds it, or its 12-character short form, gets the new id instead.
 */
#include "launcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

static int random_bytes(unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

int rl_ctr_new_id(char out[65])
{
    unsigned char raw[32];
    static const char hex[] = "0123456789abcdef";
    if (random_bytes(raw, sizeof(raw)) < 0)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

static void replace_all(char *data, size_t size, const char *old, const char *new, size_t len)
{
    char *p = data, *end = data + size;
    while ((p = memmem(p, (size_t)(end - p), old, len)) != NULL) {
        memcpy(p, new, len);
        p += len;
    }
}

void rl_ctr_retemplate(char *data, size_t size, const char *old_id, const char *new_id)
{
    replace_all(data, size, old_id, new_id, 64);
    replace_all(data, size, old_id, new_id, 12); /* the short id: hostname, /etc/hosts */
}

static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    int rc = rl_write_all(fd, data, len);
    close(fd);
    return rc;
}

/* write to path.tmp.<pid>, then rename: readers never see half a file */
static int write_atomic(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    if (write_file(tmp, data, len, 0600) < 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int private_mkdir(const char *path)
{
    if (mkdir(path, 0700) == 0)
        return 0;
    struct stat st;
    if (errno != EEXIST || lstat(path, &st) < 0)
        return -1;
    return S_ISDIR(st.st_mode) && st.st_uid == getuid() ? 0 : -1;
}

static const char *pick_word(const char *list, size_t *len, unsigned int r)
{
    size_t n = 0;
    for (const char *p = list; *p; p++)
        if (*p != ' ' && (p == list || p[-1] == ' '))
            n++;
    if (n == 0)
        return NULL;
    size_t want = r % n, i = 0;
    for (const char *p = list; *p; p++) {
        if (*p != ' ' && (p == list || p[-1] == ' ')) {
            if (i++ == want) {
                const char *e = strchr(p, ' ');
                *len = e ? (size_t)(e - p) : strlen(p);
                return p;
            }
        }
    }
    return NULL;
}

/* A stale reservation is one whose container has no config.json any more. */
static int reservation_is_stale(const struct rl_ctr_plan *cp, const char *path)
{
    char owner[80], cfg[4300];
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    ssize_t n = read(fd, owner, sizeof(owner) - 1);
    close(fd);
    if (n <= 0)
        return 1;
    owner[n] = '\0';
    owner[strcspn(owner, " \n")] = '\0';
    snprintf(cfg, sizeof(cfg), "%s/%s/config.json", cp->containers_dir, owner);
    return access(cfg, F_OK) != 0 && errno == ENOENT;
}

/* 0: reserved; 1: another live container has it; -1: error */
static int reserve(struct rl_ctr_plan *cp, const char *name)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/.names/%s", cp->containers_dir, name);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            snprintf(cp->name, sizeof(cp->name), "%s", name);
            int rc = rl_write_all(fd, cp->id, 64);
            close(fd);
            if (rc < 0) {
                unlink(path);
                cp->name[0] = '\0';
                return -1;
            }
            return 0;
        }
        if (errno != EEXIST)
            return -1;
        if (!reservation_is_stale(cp, path))
            return 1;
        unlink(path);
    }
    return 1;
}

static int reserve_name(struct rl_ctr_plan *cp)
{
    char names[4300];
    snprintf(names, sizeof(names), "%s/.names", cp->containers_dir);
    if (private_mkdir(cp->containers_dir) < 0 || private_mkdir(names) < 0)
        return -1;
    if (cp->fixed_name != NULL)
        return reserve(cp, cp->fixed_name) == 0 ? 0 : -1;
    for (int attempt = 0; attempt < 50; attempt++) {
        unsigned int r[2];
        size_t la = 0, ls = 0;
        if (random_bytes((unsigned char *)r, sizeof(r)) < 0)
            return -1;
        const char *a = pick_word(cp->adjectives, &la, r[0]);
        const char *s = pick_word(cp->surnames, &ls, r[1]);
        if (a == NULL || s == NULL || la + ls + 2 > sizeof(cp->name))
            return -1;
        char name[sizeof(cp->name)];
        snprintf(name, sizeof(name), "%.*s_%.*s", (int)la, a, (int)ls, s);
        int rc = reserve(cp, name);
        if (rc <= 0)
            return rc;
    }
    return -1;
}

static void release_name(const struct rl_ctr_plan *cp)
{
    char path[4400], owner[80];
    snprintf(path, sizeof(path), "%s/.names/%s", cp->containers_dir, cp->name);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, owner, sizeof(owner) - 1);
    close(fd);
    if (n == 64 && memcmp(owner, cp->id, 64) == 0)
        unlink(path);
}

/* "a", "b" (plan.c admits printable ASCII only: no \u escapes needed) */
static int json_strings(struct rl_buf *b, char **items, int n)
{
    for (int i = 0; i < n; i++) {
        if (rl_buf_add(b, i ? ", \"" : "\"", i ? 3 : 1) < 0)
            return -1;
        for (const char *c = items[i]; *c; c++) {
            if ((*c == '"' || *c == '\\') && rl_buf_add(b, "\\", 1) < 0)
                return -1;
            if (rl_buf_add(b, c, 1) < 0)
                return -1;
        }
        if (rl_buf_add(b, "\"", 1) < 0)
            return -1;
    }
    return 0;
}

static int lock_file(const char *path, int how)
{
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (flock(fd, how) < 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

int rl_ctr_create(struct rl_ctr_plan *cp, int (*still_valid)(void *), void *arg)
{
    char path[4400], buf[512];
    cp->created = 0;
    int store_lock = lock_file(cp->store_lock, LOCK_SH);
    if (store_lock < 0)
        return -1;
    /* Under the lock that rmi's sweep takes exclusively: the image is still there. */
    if (!still_valid(arg) || reserve_name(cp) < 0) {
        close(store_lock);
        return -1;
    }
    cp->created = 1; /* from here on rl_ctr_remove undoes it */
    snprintf(cp->dir, sizeof(cp->dir), "%s/%s", cp->containers_dir, cp->id);
    if (mkdir(cp->dir, 0700) < 0) {
        close(store_lock);
        return -1;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct rl_buf cfg = {NULL, 0, 0};
    int n = snprintf(buf, sizeof(buf), ", \"created\": %ld.%06ld, \"id\": \"%s\", \"name\": \"%s\"}",
                     (long)tv.tv_sec, (long)tv.tv_usec, cp->id, cp->name);
    snprintf(path, sizeof(path), "%s/config.json", cp->dir);
    int rc = rl_buf_add(&cfg, cp->config_prefix, strlen(cp->config_prefix));
    if (rc == 0 && cp->config_suffix != NULL) {
        rc = json_strings(&cfg, cp->tail, cp->n_tail);
        if (rc == 0)
            rc = rl_buf_add(&cfg, cp->config_suffix, strlen(cp->config_suffix));
    }
    if (rc == 0)
        rc = rl_buf_add(&cfg, buf, (size_t)n);
    if (rc == 0)
        rc = write_atomic(path, cfg.data, cfg.len);
    free(cfg.data);
    close(store_lock);
    if (rc < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/lock", cp->dir);
    int lock = lock_file(path, LOCK_EX);
    if (lock < 0)
        return -1;
    static const char *const dirs[] = {"upper", "work", "merged"};
    for (size_t i = 0; i < 3 && rc == 0; i++) {
        snprintf(path, sizeof(path), "%s/%s", cp->dir, dirs[i]);
        if (mkdir(path, 0755) < 0)
            rc = -1;
    }
    snprintf(cp->run_dir, sizeof(cp->run_dir), "%s/%s", cp->run_containers_dir, cp->id);
    if (rc == 0 && (private_mkdir(cp->run_containers_dir) < 0 || mkdir(cp->run_dir, 0700) < 0))
        rc = -1;
    for (size_t i = 0; i < cp->n_files && rc == 0; i++) {
        snprintf(path, sizeof(path), "%s/%s", cp->run_dir, cp->files[i].name);
        if (write_file(path, cp->files[i].text, strlen(cp->files[i].text), 0644) < 0)
            rc = -1;
    }
    close(lock);
    return rc;
}

static long long pid_start(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    p += 2; /* the state field */
    for (int field = 0; field < 19 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
    return p ? strtoll(p, NULL, 10) : -1;
}

int rl_ctr_started(const struct rl_ctr_plan *cp, int pid)
{
    char path[4400], buf[512];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long start = pid_start(pid), mine = pid_start((int)getpid());
    int n = snprintf(buf, sizeof(buf),
                     "{\"monitor_pid\": %d, \"monitor_start\": %lld, \"pid\": %d, \"pid_start\": %lld, "
                     "\"started_at\": %ld.%06ld}",
                     (int)getpid(), mine, pid, start, (long)tv.tv_sec, (long)tv.tv_usec);
    snprintf(path, sizeof(path), "%s/state.json", cp->run_dir);
    return write_atomic(path, buf, (size_t)n);
}

static int rmtree(const char *parent, const char *name)
{
    int dirfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return errno == ENOENT ? 0 : -1;
    struct rl_error err;
    int rc = rl_rmtree_at(dirfd, name, &err);
    close(dirfd);
    return rc;
}

/* rmtree, and where the container left files of subordinate ids, again from a
 * child in a user namespace with the container's id maps (rl_job.c), as the Python
 * CLI's lifecycle.remove_tree does. */
static int rmtree_anyhow(const char *parent, const char *name, int (*map_ids)(void *, int), void *arg)
{
    if (rmtree(parent, name) == 0)
        return 0;
    if (map_ids == NULL)
        return -1;
    int dirfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return -1;
    struct rl_job job;
    memset(&job, 0, sizeof(job));
    job.kind = RL_JOB_RMTREE;
    job.tar_fd = -1;
    job.dirfd = dirfd;
    job.name = name;
    int pid, sync;
    struct rl_error err;
    int rc = rl_job_start(&job, &pid, &sync, &err);
    close(dirfd);
    if (rc < 0)
        return -1;
    if (map_ids(arg, pid) < 0) {
        rl_job_abort(pid, sync);
        return -1;
    }
    struct rl_untar_stats stats;
    return rl_job_finish(pid, sync, &stats, &err);
}

/* The deletion itself, in a detached child: the command's caller gets its exit
 * status as soon as the container is out of `ps` and its name is free. */
static void delete_files(const struct rl_ctr_plan *cp, const char *trash, int background,
                         int (*map_ids)(void *, int), void *arg)
{
    if (background) {
        pid_t pid = fork();
        if (pid > 0) {
            if (cp->hold_fd >= 0)
                close(cp->hold_fd);
            return;
        }
        if (pid == 0) {
            setsid();
            int null = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null >= 0) {
                dup2(null, 0);
                dup2(null, 1);
                dup2(null, 2);
            }
            /* nothing of the caller's stays open: a pipe it reads must see EOF now */
            for (int fd = 3; fd < 1024; fd++)
                if (fd != null)
                    close(fd);
        }
    }
    if (cp->hold_fd >= 0)
        close(cp->hold_fd); /* (also in the child: the last reference) the namespace goes */
    rmtree_anyhow(cp->containers_dir, trash, map_ids, arg);
    rmtree(cp->run_containers_dir, cp->id);
    if (background)
        _exit(0);
}

int rl_ctr_remove(const struct rl_ctr_plan *cp, int background, int (*map_ids)(void *, int), void *arg)
{
    char path[4400], trash[200];
    if (!cp->created)
        return 0;
    snprintf(path, sizeof(path), "%s/lock", cp->dir);
    int lock = lock_file(path, LOCK_EX);
    snprintf(path, sizeof(path), "%s/config.json", cp->dir);
    if (lock < 0 || access(path, F_OK) != 0) {
        /* `rm -f` from elsewhere was first, or the record never got that far */
        if (lock >= 0)
            close(lock);
        if (cp->hold_fd >= 0)
            close(cp->hold_fd);
        rmtree(cp->containers_dir, cp->id);
        rmtree(cp->run_containers_dir, cp->id);
        release_name(cp);
        return 0;
    }
    /* One rename takes it out of `ps` whole, as `rm` does; a deletion that is
     * killed leaves a trash directory that the next `rm` finishes. */
    snprintf(trash, sizeof(trash), ".removing-%s-%d", cp->id, (int)getpid());
    snprintf(path, sizeof(path), "%s/%s", cp->containers_dir, trash);
    int rc = rename(cp->dir, path);
    int saved = errno;
    close(lock);
    if (rc == 0) {
        release_name(cp); /* (kept while the record stays: it still names the container) */
        delete_files(cp, trash, background, map_ids, arg);
    } else if (cp->hold_fd >= 0) {
        close(cp->hold_fd);
    }
    errno = saved;
    return rc;
}
