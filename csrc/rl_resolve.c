/* rl_resolve.c: open paths below a root directory fd without ever leaving it.
 *
 * Preferred: openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), where the kernel
 * treats the dirfd as "/" for "..", absolute names and symlink targets.
 * Fallback (kernels < 5.6): the same semantics in user space, one component at a
 * time with O_NOFOLLOW, symlinks expanded by hand and re-anchored at the root.
 * Allocation-free, so the cloned child may use it. */
#include "rootless.h"

#include <limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define RL_MAX_SYMLINKS 40

static int openat2_state = -1; /* -1 unknown, 0 absent, 1 present */

static int sys_openat2(int dirfd, const char *path, int oflags, mode_t mode)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(oflags | O_CLOEXEC);
    if (oflags & (O_CREAT | O_TMPFILE))
        how.mode = mode;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    long fd;
    do
        fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    while (fd < 0 && (errno == EINTR || errno == EAGAIN));
    return (int)fd;
}

int rl_have_openat2(void)
{
    if (openat2_state < 0) {
        int fd = sys_openat2(AT_FDCWD, "/", O_PATH | O_DIRECTORY, 0);
        if (fd >= 0) {
            close(fd);
            openat2_state = 1;
        } else {
            openat2_state = (errno == ENOSYS || errno == EPERM) ? 0 : 1;
        }
    }
    return openat2_state;
}

/* Split the first component off *rest. Returns its length (0 when done). */
static size_t next_component(const char **rest, const char **comp)
{
    const char *p = *rest;
    while (*p == '/')
        p++;
    const char *start = p;
    while (*p != '\0' && *p != '/')
        p++;
    *comp = start;
    *rest = p;
    return (size_t)(p - start);
}

static int only_slashes(const char *p)
{
    while (*p == '/')
        p++;
    return *p == '\0';
}

/* Re-open the directory chain `resolved` (symlink-free, relative) from the root. */
static int reopen_chain(int rootfd, const char *resolved)
{
    int cur = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    const char *rest = resolved, *comp;
    size_t len;
    char name[NAME_MAX + 1];
    while (cur >= 0 && (len = next_component(&rest, &comp)) > 0) {
        if (len > NAME_MAX) {
            close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(name, comp, len);
        name[len] = '\0';
        int next = openat(cur, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
        close(cur);
        cur = next;
    }
    return cur;
}

static int walk_fallback(int rootfd, const char *path, int oflags, mode_t mode)
{
    char pending[PATH_MAX * 2]; /* what is left to resolve */
    char resolved[PATH_MAX];    /* symlink-free prefix, relative to root */
    char name[NAME_MAX + 1];
    char target[PATH_MAX];
    int links = 0;

    if (rl_strlcpy(pending, path, sizeof(pending)) >= sizeof(pending)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    resolved[0] = '\0';
    int cur = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0)
        return -1;
    const char *rest = pending;
    for (;;) {
        const char *comp;
        size_t len = next_component(&rest, &comp);
        int last = only_slashes(rest);
        if (len == 0) { /* the path names the current directory */
            if (oflags & O_PATH)
                return cur;
            int fd = openat(cur, ".", oflags | O_CLOEXEC, mode);
            close(cur);
            return fd;
        }
        if (len > NAME_MAX) {
            close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(name, comp, len);
        name[len] = '\0';
        if (strcmp(name, ".") == 0)
            goto maybe_done;
        if (strcmp(name, "..") == 0) {
            char *slash = strrchr(resolved, '/');
            if (slash != NULL)
                *slash = '\0';
            else
                resolved[0] = '\0';
            close(cur);
            cur = reopen_chain(rootfd, resolved);
            if (cur < 0)
                return -1;
            goto maybe_done;
        }
        struct stat st;
        int fd = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT && last && (oflags & O_CREAT)) {
                fd = openat(cur, name, oflags | O_NOFOLLOW | O_CLOEXEC, mode);
                close(cur);
                return fd;
            }
            close(cur);
            return -1;
        }
        if (fstat(fd, &st) < 0) {
            close(fd);
            close(cur);
            return -1;
        }
        if (S_ISLNK(st.st_mode) && !(last && (oflags & O_NOFOLLOW))) {
            close(fd);
            if (++links > RL_MAX_SYMLINKS) {
                close(cur);
                errno = ELOOP;
                return -1;
            }
            ssize_t n = readlinkat(cur, name, target, sizeof(target) - 1);
            if (n < 0) {
                close(cur);
                return -1;
            }
            target[n] = '\0';
            char joined[PATH_MAX * 2];
            size_t tl = (size_t)n, rl = strlen(rest);
            if (tl + 1 + rl + 1 > sizeof(joined)) {
                close(cur);
                errno = ENAMETOOLONG;
                return -1;
            }
            memcpy(joined, target, tl);
            joined[tl] = '/';
            memcpy(joined + tl + 1, rest, rl + 1);
            memcpy(pending, joined, tl + 1 + rl + 1);
            rest = pending;
            if (target[0] == '/') {
                resolved[0] = '\0';
                close(cur);
                cur = reopen_chain(rootfd, "");
                if (cur < 0)
                    return -1;
            }
            continue;
        }
        if (last) {
            if (oflags & O_PATH) {
                close(cur);
                if ((oflags & O_DIRECTORY) && !S_ISDIR(st.st_mode)) {
                    close(fd);
                    errno = ENOTDIR;
                    return -1;
                }
                return fd;
            }
            close(fd);
            fd = openat(cur, name, oflags | O_NOFOLLOW | O_CLOEXEC, mode);
            int saved = errno;
            close(cur);
            errno = saved;
            return fd;
        }
        if (!S_ISDIR(st.st_mode)) {
            close(fd);
            close(cur);
            errno = ENOTDIR;
            return -1;
        }
        size_t used = strlen(resolved);
        if (used + 1 + len + 1 > sizeof(resolved)) {
            close(fd);
            close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        if (used > 0)
            resolved[used++] = '/';
        memcpy(resolved + used, name, len + 1);
        close(cur);
        cur = fd;
        continue;
    maybe_done:
        if (last) {
            if (oflags & O_PATH)
                return cur;
            fd = openat(cur, ".", oflags | O_CLOEXEC, mode);
            close(cur);
            return fd;
        }
    }
}

int rl_open_in_root(int rootfd, const char *path, int oflags, mode_t mode)
{
    if (path == NULL || path[0] == '\0')
        path = ".";
    if (rl_have_openat2())
        return sys_openat2(rootfd, path, oflags, mode);
    return walk_fallback(rootfd, path, oflags, mode);
}

int rl_mkdir_in_root(int rootfd, const char *path, mode_t mode)
{
    int fd = rl_open_in_root(rootfd, path, O_PATH | O_DIRECTORY, 0);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    /* Create the missing components one by one, each relative to a safely opened parent. */
    char prefix[PATH_MAX];
    const char *rest = path, *comp;
    size_t len, used = 0;
    int cur = rl_open_in_root(rootfd, ".", O_PATH | O_DIRECTORY, 0);
    while (cur >= 0 && (len = next_component(&rest, &comp)) > 0) {
        if (used + len + 2 > sizeof(prefix) || len > NAME_MAX) {
            close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        if (used > 0)
            prefix[used++] = '/';
        memcpy(prefix + used, comp, len);
        used += len;
        prefix[used] = '\0';
        int next = rl_open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY, 0);
        if (next < 0 && errno == ENOENT) {
            char name[NAME_MAX + 1];
            memcpy(name, comp, len);
            name[len] = '\0';
            if (mkdirat(cur, name, mode) < 0 && errno != EEXIST) {
                int saved = errno;
                close(cur);
                errno = saved;
                return -1;
            }
            next = rl_open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY, 0);
        }
        int saved = errno;
        close(cur);
        errno = saved;
        cur = next;
    }
    return cur;
}

int rl_mkfile_in_root(int rootfd, const char *path, mode_t mode)
{
    int fd = rl_open_in_root(rootfd, path, O_PATH, 0);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    /* Parent first (mkdir -p), then an exclusive create of the last component. */
    char parent[PATH_MAX];
    if (rl_strlcpy(parent, path, sizeof(parent)) >= sizeof(parent)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t n = strlen(parent);
    while (n > 0 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    const char *name = parent;
    int dirfd;
    if (slash != NULL) {
        *slash = '\0';
        name = slash + 1;
        dirfd = rl_mkdir_in_root(rootfd, parent[0] ? parent : ".", 0755);
    } else {
        dirfd = rl_open_in_root(rootfd, ".", O_PATH | O_DIRECTORY, 0);
    }
    if (dirfd < 0)
        return -1;
    int wfd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (wfd < 0 && errno != EEXIST) {
        int saved = errno;
        close(dirfd);
        errno = saved;
        return -1;
    }
    if (wfd >= 0)
        close(wfd);
    close(dirfd);
    return rl_open_in_root(rootfd, path, O_PATH, 0);
}

int rl_openat_in_root(int rootfd, const char *path, int oflags)
{
    return rl_open_in_root(rootfd, path, oflags & ~O_CREAT, 0);
}
