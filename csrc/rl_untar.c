/* rl_untar.c: streaming tar reader that unpacks an OCI layer below a root fd.
 *
 * Formats: ustar/v7, GNU long names and links (L/K), GNU sparse (old 'S' type
 * and PAX sparse 0.0, 0.1 and 1.0), PAX extended and global headers (path,
 * linkpath, size, uid, gid, mtime, atime, SCHILY.xattr.*).
 *
 * Safety: every member is created as (parent dir fd, single name) with
 * O_EXCL/O_NOFOLLOW/AT_SYMLINK_NOFOLLOW. Parent directories are reached one
 * component at a time with O_NOFOLLOW; a symlink met on the way is resolved
 * with rl_open_in_root(), i.e. inside the root as if chrooted (what docker's
 * chrootarchive and umoci's SecureJoin do), so no archive can write outside.
 * Names are cleaned lexically first: a leading "/" and ".." never climb above
 * the root. An existing non-directory is unlinked before a new member takes
 * its name (a symlink is replaced, never written through).
 *
 * Speed: one 1 MiB read buffer, a stack of open directory fds along the current
 * path (tar streams are depth-first), fd-based metadata calls, chmod only when
 * umask got in the way. Directory modes and times are applied at the end,
 * deepest first. No allocation per member: the few growable buffers are reused. */
#include "rootless.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

#define RD_SIZE (1u << 20)
#define META_MAX (16u << 20)  /* largest PAX / long-name payload accepted */
#define SPARSE_MAX (1u << 20) /* most sparse regions per file */
#define STACK_MAX 96          /* directory levels kept open */
#define RMRF_DEPTH_MAX 512

#define OVERRIDE_XATTR "user.containers.override_stat"
#define OPQ_NAME ".wh..wh..opq"
#define WH_PREFIX ".wh."

/* ---------------------------------------------------------------- reader */

struct rd {
    int fd;
    unsigned char *buf;
    size_t pos, len;
};

static ssize_t rd_read(struct rd *r)
{
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->len, RD_SIZE - r->len);
        if (n >= 0) {
            r->len += (size_t)n;
            return n;
        }
        if (errno != EINTR)
            return -1;
    }
}

/* Make n (<= RD_SIZE) contiguous bytes available. 1: ok, 0: EOF first, -1: error. */
static int rd_need(struct rd *r, size_t n)
{
    if (r->len - r->pos >= n)
        return 1;
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    while (r->len < n) {
        ssize_t k = rd_read(r);
        if (k <= 0)
            return (int)k;
    }
    return 1;
}

/* Point *p at up to max buffered bytes and consume them. Count, 0 at EOF, -1 error. */
static ssize_t rd_take(struct rd *r, size_t max, const unsigned char **p)
{
    if (r->pos == r->len) {
        r->pos = r->len = 0;
        ssize_t k = rd_read(r);
        if (k <= 0)
            return k;
    }
    size_t n = r->len - r->pos;
    if (n > max)
        n = max;
    *p = r->buf + r->pos;
    r->pos += n;
    return (ssize_t)n;
}

/* --------------------------------------------------------------- helpers */

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* A grow-by-doubling array of fixed-size items. */
struct vec {
    void *p;
    size_t n, cap, item;
};

static void *vec_push(struct vec *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        void *p = realloc(v->p, cap * v->item);
        if (p == NULL)
            return NULL;
        v->p = p;
        v->cap = cap;
    }
    return (char *)v->p + v->item * v->n++;
}

struct xref {
    const char *name;
    const char *value;
    size_t len;
};

struct region {
    uint64_t off, len;
};

struct dirrec {
    size_t path_off;
    size_t seq;
    uint32_t depth;
    uint32_t mode;
    struct timespec atime, mtime;
};

/* 64-bit FNV-1a hashes of the paths this layer created (flatten mode only):
 * whiteouts and opaque markers must not remove the layer's own members. */
struct pset {
    uint64_t *slot;
    size_t n, cap;
};

static uint64_t path_hash(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1; /* 0 marks an empty slot */
}

static int pset_add(struct pset *s, const char *p, size_t len)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *slot = calloc(cap, sizeof(*slot));
        if (slot == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slot[i] == 0)
                continue;
            size_t j = (size_t)(s->slot[i] & (cap - 1));
            while (slot[j] != 0)
                j = (j + 1) & (cap - 1);
            slot[j] = s->slot[i];
        }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    uint64_t h = path_hash(p, len);
    size_t j = (size_t)(h & (s->cap - 1));
    while (s->slot[j] != 0) {
        if (s->slot[j] == h)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slot[j] = h;
    s->n++;
    return 0;
}

static int pset_has(const struct pset *s, const char *p, size_t len)
{
    if (s->cap == 0)
        return 0;
    uint64_t h = path_hash(p, len);
    size_t j = (size_t)(h & (s->cap - 1));
    while (s->slot[j] != 0) {
        if (s->slot[j] == h)
            return 1;
        j = (j + 1) & (s->cap - 1);
    }
    return 0;
}

/* PAX values, from one 'x' header or the accumulated 'g' headers. */
#define PX_PATH 1u
#define PX_LINK 2u
#define PX_SIZE 4u
#define PX_UID 8u
#define PX_GID 16u
#define PX_MTIME 32u
#define PX_ATIME 64u

struct pax {
    unsigned set;     /* PX_* given a value */
    unsigned cleared; /* PX_* given an empty value (cancels a global one) */
    const char *path, *link;
    uint64_t size, uid, gid;
    struct timespec mtime, atime;
    struct vec xattrs; /* struct xref into buf */
    struct buf buf;
    /* GNU sparse keys (local headers only) */
    int sp_major, sp_minor, sp_seen;
    const char *sp_name, *sp_map;
    uint64_t sp_realsize;
    int sp_has_realsize;
};

struct entry {
    char type;
    char path[PATH_MAX]; /* cleaned, relative, no trailing slash; "" is the root */
    size_t plen;
    char link[PATH_MAX]; /* symlink target as is; hard link target cleaned */
    uint32_t mode, uid, gid;
    uint64_t size;     /* data bytes in the archive */
    uint64_t realsize; /* sparse: apparent size */
    int sparse;        /* 0, 1 = old GNU / PAX 0.x map known, 2 = PAX 1.0 map in data */
    unsigned devmajor, devminor;
    struct timespec mtime, atime;
};

struct ut {
    int root;
    unsigned flags;
    const struct rl_untar_opts *opts;
    struct rl_untar_stats *st;
    struct rl_error *err;
    struct rd rd;
    int umask; /* -1 unknown */
    uint64_t remaining; /* data bytes of the current member not consumed yet */

    /* open directories along spath: fds[0] is the root */
    int depth;
    int fds[STACK_MAX + 1];
    size_t ends[STACK_MAX + 1];
    char spath[PATH_MAX];
    int tmpfd; /* parent fd deeper than the stack, owned */
    unsigned char sgid[STACK_MAX + 1]; /* level is a setgid directory */
    int parent_sgid;                   /* the parent of the current member is */
    uid_t euid;
    gid_t egid;

    struct buf longname, longlink;
    struct pax local, global;
    struct vec sparse; /* struct region */
    struct vec dirs;   /* struct dirrec */
    struct buf dirpaths;
    struct pset created;
    int flatten;

    unsigned char hdr[512];
    struct entry e;
    int errnum; /* errno of the last fail() */
    char shown[200]; /* the member's path as messages show it */
};

/* The member's path for a message: control characters (a newline in a hostile
 * name would split the one-line error) become '?', long paths are cut. */
static const char *printable(const char *in, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        out[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

static const char *shown(struct ut *u)
{
    return u->e.plen ? printable(u->e.path, u->e.plen, u->shown, sizeof(u->shown)) : ".";
}

static int fail(struct ut *u, int errnum, const char *what)
{
    u->errnum = errnum;
    return rl_error_set(u->err, errnum, RL_STAGE_UNTAR, "untar: %s: %s", shown(u), what);
}

static int fail_errno(struct ut *u, const char *what)
{
    return fail(u, errno, what);
}

static int mode_umask(void)
{
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char b[4096];
    ssize_t n = read(fd, b, sizeof(b) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    b[n] = '\0';
    const char *p = strstr(b, "\nUmask:");
    if (p == NULL)
        return -1;
    return (int)strtol(p + 7, NULL, 8) & 0777;
}

/* ------------------------------------------------------------ name rules */

/* Clean `in` (len bytes) lexically into out: drop "", "." and a leading "/";
 * ".." removes the previous component and never climbs above the root. */
static int clean_path(const char *in, size_t len, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0, i = 0;
    while (i < len) {
        while (i < len && in[i] == '/')
            i++;
        size_t s = i;
        while (i < len && in[i] != '/')
            i++;
        size_t n = i - s;
        if (n == 0 || (n == 1 && in[s] == '.'))
            continue;
        if (n == 2 && in[s] == '.' && in[s + 1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        if (memchr(in + s, '\0', n) != NULL)
            break;
        if (o + (o > 0) + n + 1 > cap)
            return -1;
        if (o > 0)
            out[o++] = '/';
        memcpy(out + o, in + s, n);
        o += n;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

static const char *base_name(const char *path, size_t len, size_t *dirlen)
{
    const char *slash = memrchr(path, '/', len);
    *dirlen = slash ? (size_t)(slash - path) : 0;
    return slash ? slash + 1 : path;
}

/* Xattrs a layer must not carry: overlay and fuse-overlayfs metadata (forged
 * whiteouts, opaque markers, redirects), ownership records (containers/storage's
 * user.containers.*), any trusted.* name, and file capabilities
 * (security.capability: no_new_privs makes them useless inside, and the store
 * must not hold capability-bearing binaries on the host). */
static int xattr_forbidden(const char *name)
{
    return strncmp(name, "trusted.", 8) == 0 || strncmp(name, "user.overlay.", 13) == 0 ||
           strncmp(name, "user.fuseoverlayfs.", 19) == 0 || strncmp(name, "user.containers.", 16) == 0 ||
           strncmp(name, "security.fuseoverlayfs.", 23) == 0 || strcmp(name, "security.capability") == 0 ||
           strcmp(name, OVERRIDE_XATTR) == 0;
}

/* -------------------------------------------------------- directory stack */

static void stack_pop(struct ut *u, int lvl)
{
    while (u->depth > lvl) {
        close(u->fds[u->depth]);
        u->depth--;
    }
}

static void drop_tmpfd(struct ut *u)
{
    if (u->tmpfd >= 0) {
        close(u->tmpfd);
        u->tmpfd = -1;
    }
}

static int note_created(struct ut *u, const char *p, size_t len)
{
    if (!u->flatten)
        return 0;
    if (pset_add(&u->created, p, len) < 0) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* Open one component below dfd as a directory, creating it when missing; a
 * symlink is followed only inside the root. prefix[0..plen) names it. */
static int open_comp(struct ut *u, int dfd, const char *name, const char *prefix, size_t plen, int create)
{
    int fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (mkdirat(dfd, name, 0755) < 0 && errno != EEXIST)
            return -1;
        fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0 && (errno == ENOTDIR || errno == ELOOP)) {
        struct stat sb;
        if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            return -1;
        if (!S_ISLNK(sb.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        char tmp[PATH_MAX];
        memcpy(tmp, prefix, plen);
        tmp[plen] = '\0';
        fd = rl_open_in_root(u->root, tmp, O_PATH | O_DIRECTORY, 0);
    }
    if (fd >= 0 && note_created(u, prefix, plen) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int fd_is_sgid(int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 && (sb.st_mode & S_ISGID);
}

/* A borrowed fd for directory dir[0..dlen) ("" = root), from the deepest open
 * ancestor on the stack; missing components are created when `create`. */
static int dir_fd(struct ut *u, const char *dir, size_t dlen, int create)
{
    int lvl = 0;
    while (lvl < u->depth) {
        size_t e = u->ends[lvl + 1];
        if (e > dlen || (e < dlen && dir[e] != '/') || memcmp(u->spath, dir, e) != 0)
            break;
        lvl++;
    }
    stack_pop(u, lvl);
    drop_tmpfd(u);
    size_t pos = u->ends[lvl];
    int cur = u->fds[lvl], owned = 0;
    char name[NAME_MAX + 1];
    while (pos < dlen) {
        if (dir[pos] == '/')
            pos++;
        size_t s = pos;
        while (pos < dlen && dir[pos] != '/')
            pos++;
        if (pos - s > NAME_MAX) {
            errno = ENAMETOOLONG;
            goto err;
        }
        memcpy(name, dir + s, pos - s);
        name[pos - s] = '\0';
        int fd = open_comp(u, cur, name, dir, pos, create);
        if (fd < 0)
            goto err;
        if (owned)
            close(cur); /* a level below the stack, no longer needed */
        if (!owned && u->depth < STACK_MAX) {
            memcpy(u->spath + u->ends[u->depth], dir + u->ends[u->depth], pos - u->ends[u->depth]);
            u->depth++;
            u->fds[u->depth] = fd;
            u->ends[u->depth] = pos;
            u->sgid[u->depth] = (unsigned char)fd_is_sgid(fd);
        } else {
            owned = 1;
        }
        cur = fd;
    }
    if (owned) {
        u->tmpfd = cur;
        u->parent_sgid = fd_is_sgid(cur);
    } else {
        u->parent_sgid = u->sgid[u->depth];
    }
    return cur;
err:
    if (owned) {
        int saved = errno;
        close(cur);
        errno = saved;
    }
    return -1;
}

/* ------------------------------------------------------------ removal */

/* Remove dfd/name whatever it is, recursively, without following symlinks (the
 * store's own rmtree, rl_job.c). Returns -1 with errno set. */
static int rm_rf(int dfd, const char *name)
{
    struct rl_error e;
    if (rl_rmtree_at(dfd, name, &e) < 0) {
        errno = e.errnum;
        return -1;
    }
    return 0;
}

/* Make room for a new non-directory member `name`. */
static int clear_slot(int pfd, const char *name)
{
    if (unlinkat(pfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno == EISDIR)
        return rm_rf(pfd, name);
    return -1;
}

/* ------------------------------------------------------------ metadata */

static int map_id(const struct rl_idmap *m, size_t n, uint32_t id, uint32_t *out)
{
    if (n == 0) {
        *out = id;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (id >= m[i].inside && id - m[i].inside < m[i].count) {
            *out = m[i].outside + (id - m[i].inside);
            return 0;
        }
    }
    return -1;
}

static int owner(struct ut *u, uint32_t *uid, uint32_t *gid)
{
    if (map_id(u->opts->uids, u->opts->n_uids, u->e.uid, uid) < 0)
        return rl_error_set(u->err, EOVERFLOW, RL_STAGE_UNTAR, "untar: %s: uid %u has no mapping",
                            shown(u), u->e.uid);
    if (map_id(u->opts->gids, u->opts->n_gids, u->e.gid, gid) < 0)
        return rl_error_set(u->err, EOVERFLOW, RL_STAGE_UNTAR, "untar: %s: gid %u has no mapping",
                            shown(u), u->e.gid);
    return 0;
}

/* A new inode already belongs to (euid, egid) unless its parent is setgid:
 * chown only when that differs (saves a syscall per file as root). */
static int needs_chown(const struct ut *u, uint32_t uid, uint32_t gid)
{
    return uid != (uint32_t)u->euid || gid != (uint32_t)u->egid || u->parent_sgid;
}

/* The mode bits a member gets on disk. */
static uint32_t disk_mode(struct ut *u, int is_dir)
{
    uint32_t m = u->e.mode & 07777;
    if (u->flags & RL_UNTAR_OVERRIDE_STAT)
        m = (m & 0777) | (is_dir ? 0700u : 0600u);
    return m;
}

static const char *type_word(char type, char *tmp, size_t cap, unsigned maj, unsigned min)
{
    switch (type) {
    case '5':
        return "dir";
    case '2':
        return "symlink";
    case '6':
        return "pipe";
    case '3':
        snprintf(tmp, cap, "char-%u-%u", maj, min);
        return tmp;
    case '4':
        snprintf(tmp, cap, "block-%u-%u", maj, min);
        return tmp;
    default:
        return "file";
    }
}

/* user.containers.override_stat = "uid:gid:0MODE:TYPE" (containers/storage). */
static int set_override(struct ut *u, int fd, char type)
{
    char v[96], t[48];
    int n = snprintf(v, sizeof(v), "%u:%u:0%o:%s", u->e.uid, u->e.gid, u->e.mode & 07777,
                     type_word(type, t, sizeof(t), u->e.devmajor, u->e.devminor));
    if (fsetxattr(fd, OVERRIDE_XATTR, v, (size_t)n, 0) < 0)
        return fail_errno(u, "cannot record ownership in " OVERRIDE_XATTR);
    return 0;
}

static int set_one_xattr(int fd, const char *procpath, const struct xref *x)
{
    if (fd >= 0)
        return fsetxattr(fd, x->name, x->value, x->len, 0);
    return setxattr(procpath, x->name, x->value, x->len, 0);
}

static int apply_xattr_list(struct ut *u, const struct vec *v, int fd, const char *procpath, int user_ok)
{
    const struct xref *x = v->p;
    for (size_t i = 0; i < v->n; i++) {
        int is_user = strncmp(x[i].name, "user.", 5) == 0;
        if (xattr_forbidden(x[i].name) || (is_user && !user_ok)) {
            u->st->xattrs_dropped++;
            continue;
        }
        if (set_one_xattr(fd, procpath, &x[i]) == 0)
            continue;
        if (!is_user && (errno == EPERM || errno == ENOTSUP || errno == EACCES || errno == EINVAL)) {
            u->st->xattrs_dropped++;
            continue;
        }
        int saved = errno;
        char xn[64];
        return rl_error_set(u->err, saved, RL_STAGE_UNTAR, "untar: %s: cannot set xattr %s", shown(u),
                            printable(x[i].name, strlen(x[i].name), xn, sizeof(xn)));
    }
    return 0;
}

/* Xattrs of the member: fd when we hold one, else through an O_PATH fd of pfd/name. */
static int apply_xattrs(struct ut *u, int fd, int pfd, const char *name, int user_ok)
{
    if (u->global.xattrs.n == 0 && u->local.xattrs.n == 0)
        return 0;
    char procpath[64] = "";
    int pathfd = -1;
    if (fd < 0) {
        pathfd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (pathfd < 0)
            return fail_errno(u, "cannot open for xattrs");
        snprintf(procpath, sizeof(procpath), "/proc/self/fd/%d", pathfd);
    }
    int ret = apply_xattr_list(u, &u->global.xattrs, fd, procpath, user_ok);
    if (ret == 0)
        ret = apply_xattr_list(u, &u->local.xattrs, fd, procpath, user_ok);
    if (pathfd >= 0)
        close(pathfd);
    return ret;
}

static void member_times(const struct ut *u, struct timespec ts[2])
{
    ts[0] = u->e.atime;
    ts[1] = u->e.mtime;
}

/* owner -> mode -> xattrs -> times, on an fd of a regular file (or emulated device). */
static int finish_fd(struct ut *u, int fd, char type, int created_perm_ok)
{
    if (u->flags & RL_UNTAR_CHOWN) {
        uint32_t uid, gid;
        if (owner(u, &uid, &gid) < 0)
            return -1;
        if (needs_chown(u, uid, gid) && fchown(fd, uid, gid) < 0)
            return fail_errno(u, "cannot chown");
    }
    uint32_t m = disk_mode(u, 0);
    if (!created_perm_ok || (m & 07000) || u->umask < 0 || (m & (uint32_t)u->umask)) {
        if (fchmod(fd, m) < 0)
            return fail_errno(u, "cannot chmod");
    }
    if ((u->flags & RL_UNTAR_OVERRIDE_STAT) && set_override(u, fd, type) < 0)
        return -1;
    if (apply_xattrs(u, fd, -1, NULL, 1) < 0)
        return -1;
    struct timespec ts[2];
    member_times(u, ts);
    if (futimens(fd, ts) < 0)
        return fail_errno(u, "cannot set times");
    return 0;
}

/* The same for a member we hold no fd for (symlink, fifo, device): by name. */
static int finish_at(struct ut *u, int pfd, const char *name, int is_link)
{
    if (u->flags & RL_UNTAR_CHOWN) {
        uint32_t uid, gid;
        if (owner(u, &uid, &gid) < 0)
            return -1;
        if (needs_chown(u, uid, gid) && fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
            return fail_errno(u, "cannot chown");
    }
    if (!is_link && fchmodat(pfd, name, disk_mode(u, 0), 0) < 0)
        return fail_errno(u, "cannot chmod");
    if (apply_xattrs(u, -1, pfd, name, 0) < 0)
        return -1;
    struct timespec ts[2];
    member_times(u, ts);
    if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return fail_errno(u, "cannot set times");
    return 0;
}

/* -------------------------------------------------------------- data */

static int truncated(struct ut *u)
{
    return fail(u, EIO, "truncated archive");
}

static int skip_bytes(struct ut *u, uint64_t n)
{
    while (n > 0) {
        const unsigned char *p;
        ssize_t k = rd_take(&u->rd, n > RD_SIZE ? RD_SIZE : (size_t)n, &p);
        if (k < 0)
            return fail_errno(u, "read");
        if (k == 0)
            return truncated(u);
        n -= (uint64_t)k;
    }
    return 0;
}

/* Copy n bytes of member data to fd at its current offset. */
static int copy_data(struct ut *u, int fd, uint64_t n)
{
    if (n > u->remaining)
        return fail(u, EINVAL, "sparse map larger than the member data");
    u->remaining -= n;
    while (n > 0) {
        const unsigned char *p;
        ssize_t k = rd_take(&u->rd, n > RD_SIZE ? RD_SIZE : (size_t)n, &p);
        if (k < 0)
            return fail_errno(u, "read");
        if (k == 0)
            return truncated(u);
        if (rl_write_all(fd, p, (size_t)k) < 0)
            return fail_errno(u, "write");
        n -= (uint64_t)k;
    }
    return 0;
}

/* PAX sparse 1.0: decimal lines at the start of the data. */
static int read_map_number(struct ut *u, uint64_t *val, uint64_t *used)
{
    uint64_t v = 0;
    int digits = 0;
    for (;;) {
        const unsigned char *p;
        if (u->remaining == 0)
            return fail(u, EINVAL, "bad sparse map");
        ssize_t k = rd_take(&u->rd, 1, &p);
        if (k < 0)
            return fail_errno(u, "read");
        if (k == 0)
            return truncated(u);
        u->remaining--;
        (*used)++;
        if (*p == '\n' && digits > 0)
            break;
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10 || ++digits > 20)
            return fail(u, EINVAL, "bad sparse map");
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *val = v;
    return 0;
}

static int add_region(struct ut *u, uint64_t off, uint64_t len)
{
    if (u->sparse.n >= SPARSE_MAX)
        return fail(u, E2BIG, "too many sparse regions");
    struct region *r = vec_push(&u->sparse);
    if (r == NULL)
        return fail(u, ENOMEM, "sparse map");
    r->off = off;
    r->len = len;
    return 0;
}

static int read_sparse_map_1_0(struct ut *u)
{
    uint64_t used = 0, count, off, len;
    if (read_map_number(u, &count, &used) < 0)
        return -1;
    if (count > SPARSE_MAX)
        return fail(u, E2BIG, "too many sparse regions");
    for (uint64_t i = 0; i < count; i++) {
        if (read_map_number(u, &off, &used) < 0 || read_map_number(u, &len, &used) < 0)
            return -1;
        if (add_region(u, off, len) < 0)
            return -1;
    }
    uint64_t pad = (512 - used % 512) % 512;
    if (pad > u->remaining)
        return fail(u, EINVAL, "bad sparse map");
    u->remaining -= pad;
    return skip_bytes(u, pad);
}

static int write_sparse(struct ut *u, int fd)
{
    if (u->e.sparse == 2 && read_sparse_map_1_0(u) < 0)
        return -1;
    const struct region *r = u->sparse.p;
    uint64_t end = 0, total = 0;
    for (size_t i = 0; i < u->sparse.n; i++) {
        if (r[i].off < end || r[i].len > UINT64_MAX - r[i].off || r[i].off + r[i].len > u->e.realsize)
            return fail(u, EINVAL, "bad sparse map");
        end = r[i].off + r[i].len;
        total += r[i].len;
    }
    if (total != u->remaining)
        return fail(u, EINVAL, "sparse map does not match the member size");
    for (size_t i = 0; i < u->sparse.n; i++) {
        if (r[i].len == 0)
            continue;
        if (lseek(fd, (off_t)r[i].off, SEEK_SET) < 0)
            return fail_errno(u, "seek");
        if (copy_data(u, fd, r[i].len) < 0)
            return -1;
    }
    if (ftruncate(fd, (off_t)u->e.realsize) < 0)
        return fail_errno(u, "truncate");
    u->st->sparse_files++;
    u->st->bytes += u->e.realsize;
    return 0;
}

/* ------------------------------------------------------------- members */

static int record_dir(struct ut *u, uint32_t mode)
{
    size_t off = u->dirpaths.len;
    if (buf_reserve(&u->dirpaths, off + u->e.plen + 1) < 0)
        return fail(u, ENOMEM, "directory list");
    memcpy(u->dirpaths.p + off, u->e.path, u->e.plen + 1);
    u->dirpaths.len += u->e.plen + 1;
    struct dirrec *d = vec_push(&u->dirs);
    if (d == NULL)
        return fail(u, ENOMEM, "directory list");
    uint32_t depth = 0;
    for (size_t i = 0; i < u->e.plen; i++)
        depth += u->e.path[i] == '/';
    d->path_off = off;
    d->seq = u->dirs.n;
    d->depth = u->e.plen ? depth + 1 : 0;
    d->mode = mode;
    d->atime = u->e.atime;
    d->mtime = u->e.mtime;
    return 0;
}

static int make_dir(struct ut *u, int pfd, const char *name, int can_push)
{
    int fd;
    if (u->e.plen == 0) {
        fd = openat(u->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        can_push = 0;
    } else {
        int tries = 0;
        while (mkdirat(pfd, name, 0700) < 0) {
            struct stat sb;
            if (errno != EEXIST || tries++ > 0)
                return fail_errno(u, "cannot create directory");
            if (fstatat(pfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(u, "cannot stat");
            if (S_ISDIR(sb.st_mode))
                break;
            if (clear_slot(pfd, name) < 0)
                return fail_errno(u, "cannot replace");
        }
        fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == EACCES && fchmodat(pfd, name, 0700, 0) == 0)
            fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0)
        return fail_errno(u, "cannot open directory");
    int ret = 0;
    if (u->flags & RL_UNTAR_CHOWN) {
        uint32_t uid, gid;
        ret = owner(u, &uid, &gid);
        if (ret == 0 && fchown(fd, uid, gid) < 0)
            ret = fail_errno(u, "cannot chown");
    }
    if (ret == 0 && (u->flags & RL_UNTAR_OVERRIDE_STAT))
        ret = set_override(u, fd, '5');
    if (ret == 0)
        ret = apply_xattrs(u, fd, -1, NULL, 1);
    if (ret == 0)
        ret = record_dir(u, disk_mode(u, 1));
    if (ret == 0)
        ret = note_created(u, u->e.path, u->e.plen) < 0 ? fail_errno(u, "path set") : 0;
    if (ret == 0 && can_push && u->depth < STACK_MAX) {
        memcpy(u->spath + u->ends[u->depth], u->e.path + u->ends[u->depth], u->e.plen - u->ends[u->depth]);
        u->depth++;
        u->fds[u->depth] = fd;
        u->ends[u->depth] = u->e.plen;
        u->sgid[u->depth] = (unsigned char)fd_is_sgid(fd);
        return 0;
    }
    close(fd);
    return ret;
}

/* Bomb limits: one file's apparent size, and all files' together. */
static int check_limits(struct ut *u)
{
    uint64_t size = u->e.sparse ? u->e.realsize : u->e.size;
    uint64_t max_file = u->opts->max_file_size, max_total = u->opts->max_total_size;
    u->errnum = EFBIG;
    if (max_file && size > max_file)
        return rl_error_set(u->err, EFBIG, RL_STAGE_UNTAR,
                            "untar: %s: file of %llu bytes is over the limit of %llu bytes per file",
                            shown(u), (unsigned long long)size, (unsigned long long)max_file);
    if (max_total && (size > max_total || u->st->bytes > max_total - size))
        return rl_error_set(u->err, EFBIG, RL_STAGE_UNTAR,
                            "untar: %s: the layer's files add up to more than the limit of %llu bytes",
                            shown(u), (unsigned long long)max_total);
    u->errnum = 0;
    return 0;
}

static int make_file(struct ut *u, int pfd, const char *name)
{
    if (check_limits(u) < 0)
        return -1;
    uint32_t m = disk_mode(u, 0);
    int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, m & 0777);
    if (fd < 0 && errno == EEXIST) {
        if (clear_slot(pfd, name) < 0)
            return fail_errno(u, "cannot replace");
        fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, m & 0777);
    }
    if (fd < 0)
        return fail_errno(u, "cannot create");
    int ret;
    if (u->e.sparse) {
        ret = write_sparse(u, fd);
    } else {
        ret = copy_data(u, fd, u->remaining);
        u->st->bytes += u->e.size;
    }
    if (ret == 0)
        ret = finish_fd(u, fd, '0', 1);
    if (close(fd) < 0 && ret == 0)
        ret = fail_errno(u, "close");
    if (ret == 0 && note_created(u, u->e.path, u->e.plen) < 0)
        ret = fail_errno(u, "path set");
    return ret;
}

static int make_symlink(struct ut *u, int pfd, const char *name)
{
    if (symlinkat(u->e.link, pfd, name) < 0) {
        if (errno != EEXIST || clear_slot(pfd, name) < 0 || symlinkat(u->e.link, pfd, name) < 0)
            return fail_errno(u, "cannot create symlink");
    }
    if (finish_at(u, pfd, name, 1) < 0)
        return -1;
    return note_created(u, u->e.path, u->e.plen) < 0 ? fail_errno(u, "path set") : 0;
}

static int make_hardlink(struct ut *u, int pfd, const char *name)
{
    size_t tlen = strlen(u->e.link), tdlen;
    if (tlen == 0)
        return fail(u, EPERM, "hard link to the root");
    if (tlen == u->e.plen && memcmp(u->e.link, u->e.path, tlen) == 0) {
        u->st->skipped++;
        return 0;
    }
    const char *tname = base_name(u->e.link, tlen, &tdlen);
    char tdir[PATH_MAX];
    memcpy(tdir, u->e.link, tdlen);
    tdir[tdlen] = '\0';
    int tfd = rl_open_in_root(u->root, tdir, O_PATH | O_DIRECTORY, 0);
    if (tfd < 0)
        return fail_errno(u, "hard link target directory");
    int ret = 0;
    struct stat ts, es;
    if (fstatat(tfd, tname, &ts, AT_SYMLINK_NOFOLLOW) < 0) {
        ret = fail_errno(u, "hard link target");
    } else if (S_ISDIR(ts.st_mode)) {
        ret = fail(u, EPERM, "hard link to a directory");
    } else if (linkat(tfd, tname, pfd, name, 0) < 0) {
        if (errno != EEXIST || fstatat(pfd, name, &es, AT_SYMLINK_NOFOLLOW) < 0)
            ret = fail_errno(u, "cannot create hard link");
        else if (es.st_dev == ts.st_dev && es.st_ino == ts.st_ino)
            ; /* already that file */
        else if (clear_slot(pfd, name) < 0 || linkat(tfd, tname, pfd, name, 0) < 0)
            ret = fail_errno(u, "cannot create hard link");
    }
    close(tfd);
    if (ret == 0) {
        u->st->hardlinks++;
        if (note_created(u, u->e.path, u->e.plen) < 0)
            ret = fail_errno(u, "path set");
    }
    return ret;
}

/* A device that could not (or must not) be created: an empty file carrying
 * the device in override_stat when that mode is on, else nothing. */
static int emulate_device(struct ut *u, int pfd, const char *name)
{
    u->st->devices_skipped++;
    if (!(u->flags & RL_UNTAR_OVERRIDE_STAT) || (u->flags & RL_UNTAR_NO_DEVICES))
        return 0;
    int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST && clear_slot(pfd, name) == 0)
        fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_errno(u, "cannot create device placeholder");
    int ret = finish_fd(u, fd, u->e.type, 0);
    close(fd);
    return ret;
}

static int make_node(struct ut *u, int pfd, const char *name)
{
    mode_t type = u->e.type == '3' ? S_IFCHR : u->e.type == '4' ? S_IFBLK : S_IFIFO;
    dev_t dev = type == S_IFIFO ? 0 : makedev(u->e.devmajor, u->e.devminor);
    if (type != S_IFIFO && (u->flags & RL_UNTAR_NO_DEVICES))
        return emulate_device(u, pfd, name);
    mode_t perm = disk_mode(u, 0) & 0777;
    if (mknodat(pfd, name, type | perm, dev) < 0) {
        if (errno == EEXIST && clear_slot(pfd, name) == 0 && mknodat(pfd, name, type | perm, dev) == 0)
            goto made;
        if (type != S_IFIFO && (errno == EPERM || errno == EACCES))
            return emulate_device(u, pfd, name);
        return fail_errno(u, "cannot create node");
    }
made:
    if (finish_at(u, pfd, name, 0) < 0)
        return -1;
    return note_created(u, u->e.path, u->e.plen) < 0 ? fail_errno(u, "path set") : 0;
}

/* ----------------------------------------------------------- whiteouts */

/* Flatten mode: remove what lower layers left in dir fd (path dir[0..dlen)),
 * keeping what this layer created. */
static int clear_opaque(struct ut *u, int fd, char *path, size_t plen, int depth)
{
    if (depth > RMRF_DEPTH_MAX) {
        errno = ELOOP;
        return -1;
    }
    int dfd = dup(fd);
    if (dfd < 0)
        return -1;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return -1;
    }
    int ret = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t n = strlen(de->d_name), clen = plen + (plen > 0) + n;
        if (clen >= PATH_MAX) {
            errno = ENAMETOOLONG;
            ret = -1;
            break;
        }
        if (plen > 0)
            path[plen] = '/';
        memcpy(path + plen + (plen > 0), de->d_name, n + 1);
        if (!pset_has(&u->created, path, clen)) {
            ret = rm_rf(fd, de->d_name);
        } else {
            int cfd = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd >= 0) {
                ret = clear_opaque(u, cfd, path, clen, depth + 1);
                close(cfd);
            }
        }
        path[plen] = '\0';
        if (ret < 0)
            break;
    }
    int saved = errno;
    closedir(d);
    errno = saved;
    return ret;
}

static int opaque(struct ut *u, int pfd, const char *dir, size_t dlen)
{
    u->st->whiteouts++;
    int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail_errno(u, "cannot open directory for opaque marker");
    int ret = 0;
    if (u->flatten) {
        char path[PATH_MAX];
        memcpy(path, dir, dlen);
        path[dlen] = '\0';
        if (clear_opaque(u, fd, path, dlen, 0) < 0)
            ret = fail_errno(u, "cannot clear opaque directory");
    } else {
        const char *x = (u->flags & RL_UNTAR_USERXATTR) ? "user.overlay.opaque" : "trusted.overlay.opaque";
        if (fsetxattr(fd, x, "y", 1, 0) < 0) {
            if (errno != EPERM && errno != ENOTSUP && errno != EACCES) {
                ret = fail_errno(u, "cannot set opaque xattr");
            } else {
                /* fuse-overlayfs also honours the marker file itself */
                int m = openat(pfd, OPQ_NAME, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (m < 0)
                    ret = fail_errno(u, "cannot create opaque marker");
                else
                    close(m);
            }
        }
    }
    close(fd);
    return ret;
}

static int whiteout(struct ut *u, int pfd, const char *name, size_t dlen)
{
    const char *victim = name + strlen(WH_PREFIX);
    u->st->whiteouts++;
    if (victim[0] == '\0' || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0)
        return fail(u, EINVAL, "bad whiteout name");
    if (u->flatten) {
        char path[PATH_MAX];
        size_t vlen = strlen(victim), plen = dlen + (dlen > 0) + vlen;
        if (plen >= PATH_MAX)
            return fail(u, ENAMETOOLONG, "whiteout");
        memcpy(path, u->e.path, dlen);
        if (dlen > 0)
            path[dlen] = '/';
        memcpy(path + dlen + (dlen > 0), victim, vlen);
        if (pset_has(&u->created, path, plen))
            return 0; /* whiteouts only hide lower layers */
        if (rm_rf(pfd, victim) < 0)
            return fail_errno(u, "cannot apply whiteout");
        return 0;
    }
    for (int tries = 0;; tries++) {
        if (mknodat(pfd, victim, S_IFCHR, makedev(0, 0)) == 0)
            return 0;
        if (errno == EEXIST && tries == 0) {
            struct stat sb;
            if (fstatat(pfd, victim, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(sb.st_mode) && sb.st_rdev == 0)
                return 0;
            if (rm_rf(pfd, victim) < 0)
                return fail_errno(u, "cannot replace with whiteout");
            continue;
        }
        if (errno != EPERM && errno != EACCES)
            return fail_errno(u, "cannot create whiteout");
        break;
    }
    /* No mknod here (unprivileged, outside a user namespace): keep the AUFS
     * ".wh.NAME" file, which fuse-overlayfs understands as a whiteout. */
    int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_errno(u, "cannot create whiteout file");
    close(fd);
    return 0;
}

/* -------------------------------------------------------------- member */

static int create_member(struct ut *u, int pfd, const char *name, size_t dlen, int is_wh)
{
    struct entry *e = &u->e;
    if (is_wh)
        return strcmp(name, OPQ_NAME) == 0 ? opaque(u, pfd, e->path, dlen) : whiteout(u, pfd, name, dlen);
    switch (e->type) {
    case '5':
        return make_dir(u, pfd, name, u->tmpfd < 0);
    case '2':
        return make_symlink(u, pfd, name);
    case '1':
        return make_hardlink(u, pfd, name);
    case '3':
    case '4':
    case '6':
        return make_node(u, pfd, name);
    default:
        return make_file(u, pfd, name);
    }
}

/* Unprivileged, a directory from a lower layer may lack u+wx (a 0555 /usr):
 * like umoci's unpriv.Wrap, open it up for this one member and restore it. */
static int retry_in_readonly_dir(struct ut *u, int pfd, const char *name, size_t dlen, int is_wh)
{
    struct stat sb;
    char proc[64];
    if (fstat(pfd, &sb) < 0 || sb.st_uid != geteuid() || (sb.st_mode & (S_IWUSR | S_IXUSR)) == (S_IWUSR | S_IXUSR))
        return -1;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
    if (chmod(proc, (sb.st_mode & 07777) | S_IRWXU) < 0)
        return -1;
    uint64_t whiteouts = u->st->whiteouts; /* counted by the first try already */
    int ret = create_member(u, pfd, name, dlen, is_wh);
    u->st->whiteouts = whiteouts;
    if (chmod(proc, sb.st_mode & 07777) < 0 && ret == 0)
        ret = fail_errno(u, "cannot restore directory mode");
    return ret;
}

static int extract(struct ut *u)
{
    struct entry *e = &u->e;
    size_t dlen = 0;
    const char *name = base_name(e->path, e->plen, &dlen);
    int is_dir = e->type == '5';

    if (e->plen == 0 && !is_dir) {
        u->st->skipped++;
        return 0;
    }
    int is_wh = e->plen > 0 && strncmp(name, WH_PREFIX, 4) == 0;
    if (is_wh && strncmp(name, WH_PREFIX WH_PREFIX, 8) == 0 && strcmp(name, OPQ_NAME) != 0) {
        u->st->skipped++; /* other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs) */
        return 0;
    }
    int pfd = dir_fd(u, e->path, dlen, 1);
    if (pfd < 0)
        return fail_errno(u, "cannot open parent directory");
    u->errnum = 0;
    int ret = create_member(u, pfd, name, dlen, is_wh);
    if (ret < 0 && u->errnum == EACCES)
        ret = retry_in_readonly_dir(u, pfd, name, dlen, is_wh);
    return ret;
}

/* --------------------------------------------------------------- header */

static int parse_num(const unsigned char *p, size_t n, int64_t *out)
{
    if (p[0] & 0x80) { /* GNU base-256 */
        int neg = p[0] == 0xff;
        uint64_t v = neg ? ~0ull : (uint64_t)(p[0] & 0x7f);
        for (size_t i = 1; i < n; i++) {
            if (!neg && (v >> 55) != 0)
                return -1;
            v = (v << 8) | p[i];
        }
        *out = (int64_t)v;
        return 0;
    }
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\0'))
        i++;
    uint64_t v = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
        if (v >> 60)
            return -1;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    for (; i < n; i++)
        if (p[i] != ' ' && p[i] != '\0')
            return -1;
    *out = (int64_t)v;
    return 0;
}

static int header_num(struct ut *u, size_t off, size_t n, int64_t *out)
{
    if (parse_num(u->hdr + off, n, out) < 0)
        return rl_error_set(u->err, EINVAL, RL_STAGE_UNTAR, "untar: bad numeric field in tar header");
    return 0;
}

static int checksum_ok(const unsigned char *h)
{
    int64_t want;
    if (parse_num(h + 148, 8, &want) < 0)
        return 0;
    uint64_t su = 0;
    int64_t ss = 0;
    for (int i = 0; i < 512; i++) {
        unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
        su += c;
        ss += (signed char)c;
    }
    return (int64_t)su == want || ss == want;
}

static int is_zero_block(const unsigned char *h)
{
    for (int i = 0; i < 512; i++)
        if (h[i] != 0)
            return 0;
    return 1;
}

/* Next header into u->hdr. 1: got one, 0: end of archive, -1: error. */
static int next_header(struct ut *u)
{
    int r = rd_need(&u->rd, 512);
    if (r < 0)
        return rl_error_set(u->err, errno, RL_STAGE_UNTAR, "untar: read failed");
    if (r == 0)
        return rl_error_set(u->err, EIO, RL_STAGE_UNTAR,
                            "untar: truncated archive (no end-of-archive marker)");
    memcpy(u->hdr, u->rd.buf + u->rd.pos, 512);
    u->rd.pos += 512;
    if (!is_zero_block(u->hdr)) {
        if (!checksum_ok(u->hdr))
            return rl_error_set(u->err, EIO, RL_STAGE_UNTAR, "untar: bad tar header checksum");
        return 1;
    }
    return 0; /* one zero block ends the archive, like GNU tar */
}

/* Read a metadata payload of n bytes (plus padding) into b, NUL-terminated. */
static int read_meta(struct ut *u, struct buf *b, uint64_t n)
{
    if (n > META_MAX)
        return rl_error_set(u->err, E2BIG, RL_STAGE_UNTAR, "untar: extended header too large");
    if (buf_reserve(b, (size_t)n + 1) < 0)
        return rl_error_set(u->err, ENOMEM, RL_STAGE_UNTAR, "untar: out of memory");
    size_t got = 0;
    while (got < n) {
        const unsigned char *p;
        ssize_t k = rd_take(&u->rd, (size_t)n - got, &p);
        if (k <= 0)
            return rl_error_set(u->err, k < 0 ? errno : EIO, RL_STAGE_UNTAR, "untar: truncated archive");
        memcpy(b->p + got, p, (size_t)k);
        got += (size_t)k;
    }
    b->p[n] = '\0';
    b->len = (size_t)n;
    uint64_t pad = (512 - n % 512) % 512;
    u->remaining = 0;
    return skip_bytes(u, pad);
}

static int parse_dec(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int parse_time(const char *s, struct timespec *ts)
{
    int neg = *s == '-';
    if (neg)
        s++;
    uint64_t sec = 0;
    long nsec = 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (sec > (uint64_t)INT64_MAX / 10 - 1)
            return -1;
        sec = sec * 10 + (uint64_t)(*s - '0');
    }
    if (digits == 0)
        return -1;
    if (*s == '.') {
        s++;
        long scale = 100000000;
        for (; *s >= '0' && *s <= '9'; s++) {
            nsec += (*s - '0') * scale;
            scale /= 10;
        }
    }
    if (*s != '\0')
        return -1;
    ts->tv_sec = neg ? -(time_t)sec : (time_t)sec;
    ts->tv_nsec = nsec;
    if (neg && nsec > 0) {
        ts->tv_sec -= 1;
        ts->tv_nsec = 1000000000 - nsec;
    }
    return 0;
}

static int pax_sparse_key(struct ut *u, struct pax *px, const char *k, const char *v)
{
    uint64_t n;
    if (strcmp(k, "major") == 0 && parse_dec(v, &n) == 0)
        px->sp_major = (int)n;
    else if (strcmp(k, "minor") == 0 && parse_dec(v, &n) == 0)
        px->sp_minor = (int)n;
    else if (strcmp(k, "name") == 0)
        px->sp_name = v;
    else if ((strcmp(k, "realsize") == 0 || strcmp(k, "size") == 0) && parse_dec(v, &n) == 0) {
        px->sp_realsize = n;
        px->sp_has_realsize = 1;
    } else if (strcmp(k, "map") == 0)
        px->sp_map = v;
    else if (strcmp(k, "offset") == 0 && parse_dec(v, &n) == 0)
        return add_region(u, n, 0); /* 0.0: offset, then numbytes */
    else if (strcmp(k, "numbytes") == 0 && parse_dec(v, &n) == 0) {
        if (u->sparse.n == 0)
            return fail(u, EINVAL, "bad sparse map");
        ((struct region *)u->sparse.p)[u->sparse.n - 1].len = n;
    } else if (strcmp(k, "numblocks") != 0)
        return 0;
    px->sp_seen = 1;
    return 0;
}

static int pax_key(struct ut *u, struct pax *px, int global, const char *k, const char *v, size_t vlen)
{
    static const struct {
        const char *key;
        unsigned bit;
    } scalars[] = {{"path", PX_PATH}, {"linkpath", PX_LINK}, {"size", PX_SIZE}, {"uid", PX_UID},
                                {"gid", PX_GID},   {"mtime", PX_MTIME},   {"atime", PX_ATIME}};
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
        if (strcmp(k, scalars[i].key) != 0)
            continue;
        unsigned bit = scalars[i].bit;
        if (vlen == 0) {
            px->set &= ~bit;
            px->cleared |= bit;
            return 0;
        }
        int bad = 0;
        switch (bit) {
        case PX_PATH:
            px->path = v;
            break;
        case PX_LINK:
            px->link = v;
            break;
        case PX_SIZE:
            bad = parse_dec(v, &px->size);
            break;
        case PX_UID:
            bad = parse_dec(v, &px->uid) || px->uid > UINT32_MAX;
            break;
        case PX_GID:
            bad = parse_dec(v, &px->gid) || px->gid > UINT32_MAX;
            break;
        case PX_MTIME:
            bad = parse_time(v, &px->mtime);
            break;
        default:
            bad = parse_time(v, &px->atime);
            break;
        }
        if (bad)
            return rl_error_set(u->err, EINVAL, RL_STAGE_UNTAR, "untar: bad PAX value for %s", k);
        px->set |= bit;
        px->cleared &= ~bit;
        return 0;
    }
    if (strncmp(k, "SCHILY.xattr.", 13) == 0 && k[13] != '\0') {
        struct xref *x = vec_push(&px->xattrs);
        if (x == NULL)
            return rl_error_set(u->err, ENOMEM, RL_STAGE_UNTAR, "untar: out of memory");
        x->name = k + 13;
        x->value = v;
        x->len = vlen;
        return 0;
    }
    if (!global && strncmp(k, "GNU.sparse.", 11) == 0)
        return pax_sparse_key(u, px, k + 11, v);
    return 0; /* uname, gname, comment, charset, ctime, ...: not needed */
}

/* Parse "LEN KEY=VALUE\n" records of px->buf in place. */
static int parse_pax(struct ut *u, struct pax *px, int global)
{
    char *p = px->buf.p, *end = px->buf.p + px->buf.len;
    while (p < end) {
        if (*p == '\0')
            break; /* some writers pad with NULs */
        uint64_t len = 0;
        char *q = p;
        while (q < end && *q >= '0' && *q <= '9' && len < META_MAX)
            len = len * 10 + (uint64_t)(*q++ - '0');
        if (q >= end || *q != ' ' || len == 0 || len > (uint64_t)(end - p) || p[len - 1] != '\n')
            return rl_error_set(u->err, EINVAL, RL_STAGE_UNTAR, "untar: malformed PAX header");
        char *key = q + 1, *rec_end = p + len - 1;
        char *eq = memchr(key, '=', (size_t)(rec_end - key));
        if (eq == NULL || eq == key)
            return rl_error_set(u->err, EINVAL, RL_STAGE_UNTAR, "untar: malformed PAX record");
        *eq = '\0';
        *rec_end = '\0';
        if (pax_key(u, px, global, key, eq + 1, (size_t)(rec_end - eq - 1)) < 0)
            return -1;
        p += len;
    }
    return 0;
}

static void pax_reset(struct pax *px)
{
    px->set = px->cleared = 0;
    px->xattrs.n = 0;
    px->sp_major = px->sp_minor = px->sp_seen = px->sp_has_realsize = 0;
    px->sp_name = px->sp_map = NULL;
}

/* Global headers accumulate: keep their buffer and re-point on every 'g'. */
static int read_global(struct ut *u, uint64_t size)
{
    /* Simplest correct model: the latest 'g' header replaces the previous one. */
    pax_reset(&u->global);
    if (read_meta(u, &u->global.buf, size) < 0)
        return -1;
    return parse_pax(u, &u->global, 1);
}

static int parse_map_0_1(struct ut *u, const char *s)
{
    while (*s) {
        char *end;
        unsigned long long off = strtoull(s, &end, 10);
        if (end == s || *end != ',')
            return fail(u, EINVAL, "bad sparse map");
        s = end + 1;
        unsigned long long len = strtoull(s, &end, 10);
        if (end == s || (*end != ',' && *end != '\0'))
            return fail(u, EINVAL, "bad sparse map");
        if (add_region(u, off, len) < 0)
            return -1;
        s = *end ? end + 1 : end;
    }
    return 0;
}

/* Old GNU sparse: 4 entries in the header, 21 per extension block. */
static int read_gnu_sparse(struct ut *u)
{
    const unsigned char *h = u->hdr;
    int64_t off, len, real;
    if (header_num(u, 483, 12, &real) < 0)
        return -1;
    u->e.realsize = (uint64_t)real;
    for (int i = 0; i < 4; i++) {
        if (h[386 + i * 24] == 0)
            break;
        if (header_num(u, 386 + (size_t)i * 24, 12, &off) < 0 || header_num(u, 398 + (size_t)i * 24, 12, &len) < 0)
            return -1;
        if (add_region(u, (uint64_t)off, (uint64_t)len) < 0)
            return -1;
    }
    int ext = h[482];
    while (ext) {
        unsigned char b[512];
        int r = rd_need(&u->rd, 512);
        if (r <= 0)
            return r < 0 ? fail_errno(u, "read") : truncated(u);
        memcpy(b, u->rd.buf + u->rd.pos, 512);
        u->rd.pos += 512;
        for (int i = 0; i < 21; i++) {
            if (b[i * 24] == 0)
                break;
            if (parse_num(b + i * 24, 12, &off) < 0 || parse_num(b + i * 24 + 12, 12, &len) < 0)
                return fail(u, EINVAL, "bad sparse header");
            if (add_region(u, (uint64_t)off, (uint64_t)len) < 0)
                return -1;
        }
        ext = b[504];
    }
    u->e.sparse = 1;
    return 0;
}

static size_t field_len(const unsigned char *p, size_t n)
{
    const unsigned char *z = memchr(p, '\0', n);
    return z ? (size_t)(z - p) : n;
}

static int set_path(struct ut *u, char *out, size_t *outlen, const char *s, size_t n)
{
    size_t dummy;
    if (clean_path(s, n, out, PATH_MAX, outlen ? outlen : &dummy) < 0)
        return rl_error_set(u->err, ENAMETOOLONG, RL_STAGE_UNTAR, "untar: member name too long");
    return 0;
}

#define PICK(bit, lv, gv, hv) \
    ((u->local.set & (bit)) ? (lv) : (u->local.cleared & (bit)) ? (hv) : (u->global.set & (bit)) ? (gv) : (hv))

/* Build u->e from the header and pending extended data. */
static int build_entry(struct ut *u)
{
    const unsigned char *h = u->hdr;
    struct entry *e = &u->e;
    int64_t v;
    int ustar = memcmp(h + 257, "ustar\0", 6) == 0;
    int gnu = memcmp(h + 257, "ustar  \0", 8) == 0;

    e->type = (char)h[156];
    e->sparse = 0;
    e->devmajor = e->devminor = 0;

    /* name: PAX path > GNU long name > ustar prefix/name */
    char raw[512];
    const char *name = raw;
    size_t nlen;
    if (u->local.sp_name != NULL) {
        name = u->local.sp_name;
        nlen = strlen(name);
    } else if (u->local.set & PX_PATH) {
        name = u->local.path;
        nlen = strlen(name);
    } else if (u->longname.len > 0) {
        name = u->longname.p;
        nlen = strlen(name);
    } else if (u->global.set & PX_PATH) {
        name = u->global.path;
        nlen = strlen(name);
    } else {
        size_t pl = ustar ? field_len(h + 345, 155) : 0, nl = field_len(h, 100);
        memcpy(raw, h + 345, pl);
        if (pl > 0)
            raw[pl++] = '/';
        memcpy(raw + pl, h, nl);
        nlen = pl + nl;
    }
    /* v7 archives mark directories with a trailing slash */
    if ((e->type == '0' || e->type == '\0') && nlen > 0 && name[nlen - 1] == '/')
        e->type = '5';
    e->plen = 0;
    e->path[0] = '\0';
    if (set_path(u, e->path, &e->plen, name, nlen) < 0)
        return -1;

    const char *link;
    size_t llen;
    if (u->local.set & PX_LINK) {
        link = u->local.link;
        llen = strlen(link);
    } else if (u->longlink.len > 0) {
        link = u->longlink.p;
        llen = strlen(link);
    } else {
        link = (const char *)h + 157;
        llen = field_len(h + 157, 100);
    }
    if (e->type == '1') {
        if (set_path(u, e->link, NULL, link, llen) < 0)
            return -1;
    } else {
        if (llen >= PATH_MAX)
            return rl_error_set(u->err, ENAMETOOLONG, RL_STAGE_UNTAR, "untar: link target too long");
        memcpy(e->link, link, llen);
        e->link[llen] = '\0';
    }

    if (header_num(u, 100, 8, &v) < 0)
        return -1;
    e->mode = (uint32_t)v & 07777;
    if (header_num(u, 108, 8, &v) < 0)
        return -1;
    e->uid = (uint32_t)PICK(PX_UID, u->local.uid, u->global.uid, (uint64_t)v);
    if (header_num(u, 116, 8, &v) < 0)
        return -1;
    e->gid = (uint32_t)PICK(PX_GID, u->local.gid, u->global.gid, (uint64_t)v);
    if (header_num(u, 124, 12, &v) < 0)
        return -1;
    e->size = PICK(PX_SIZE, u->local.size, u->global.size, (uint64_t)v);
    if (header_num(u, 136, 12, &v) < 0)
        return -1;
    struct timespec hm = {.tv_sec = (time_t)v, .tv_nsec = 0};
    e->mtime = PICK(PX_MTIME, u->local.mtime, u->global.mtime, hm);
    e->atime = PICK(PX_ATIME, u->local.atime, u->global.atime, e->mtime);
    if ((ustar || gnu) && (e->type == '3' || e->type == '4')) {
        if (header_num(u, 329, 8, &v) < 0)
            return -1;
        e->devmajor = (unsigned)v;
        if (header_num(u, 337, 8, &v) < 0)
            return -1;
        e->devminor = (unsigned)v;
    }

    /* header-only types carry no data whatever the size field says */
    if (e->type == '1' || e->type == '2' || e->type == '3' || e->type == '4' || e->type == '5' || e->type == '6')
        e->size = 0;
    e->realsize = e->size;
    if (e->type == 'S') {
        e->type = '0';
        if (read_gnu_sparse(u) < 0)
            return -1;
    } else if (u->local.sp_seen) {
        if (u->local.sp_major == 1) {
            e->sparse = 2;
        } else {
            if (u->local.sp_map != NULL && parse_map_0_1(u, u->local.sp_map) < 0)
                return -1;
            e->sparse = 1;
        }
        if (!u->local.sp_has_realsize)
            return fail(u, EINVAL, "sparse file without real size");
        e->realsize = u->local.sp_realsize;
    }
    if (e->type == '7')
        e->type = '0';
    return 0;
}

static void reset_local(struct ut *u)
{
    pax_reset(&u->local);
    u->longname.len = 0;
    u->longlink.len = 0;
    u->sparse.n = 0;
}

/* --------------------------------------------------------------- finish */

static int cmp_dirrec(const void *a, const void *b)
{
    const struct dirrec *x = a, *y = b;
    if (x->depth != y->depth)
        return x->depth > y->depth ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Directory modes and times, deepest first, once their content is in place. */
static int apply_dirs(struct ut *u)
{
    struct dirrec *d = u->dirs.p;
    if (u->dirs.n > 1) /* d is NULL when there is none: qsort's pointer must not be */
        qsort(d, u->dirs.n, sizeof(*d), cmp_dirrec);
    for (size_t i = 0; i < u->dirs.n; i++) {
        const char *path = u->dirpaths.p + d[i].path_off;
        size_t plen = strlen(path), dlen;
        const char *name = base_name(path, plen, &dlen);
        memcpy(u->e.path, path, plen + 1);
        u->e.plen = plen;
        int fd;
        if (plen == 0) {
            fd = openat(u->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        } else {
            int pfd = dir_fd(u, path, dlen, 0);
            if (pfd < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                    continue; /* removed by a later member */
                return fail_errno(u, "cannot reopen directory");
            }
            fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0 && errno == EACCES && fchmodat(pfd, name, 0700, 0) == 0)
                fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                continue;
            return fail_errno(u, "cannot reopen directory");
        }
        struct timespec ts[2] = {d[i].atime, d[i].mtime};
        int ret = 0;
        if (fchmod(fd, d[i].mode) < 0)
            ret = fail_errno(u, "cannot chmod directory");
        else if (futimens(fd, ts) < 0)
            ret = fail_errno(u, "cannot set directory times");
        close(fd);
        if (ret < 0)
            return -1;
    }
    return 0;
}

static void drain(struct ut *u)
{
    u->rd.pos = u->rd.len = 0;
    while (rd_read(&u->rd) > 0)
        u->rd.pos = u->rd.len = 0;
}

static void release(struct ut *u)
{
    stack_pop(u, 0);
    drop_tmpfd(u);
    free(u->rd.buf);
    free(u->longname.p);
    free(u->longlink.p);
    free(u->local.buf.p);
    free(u->local.xattrs.p);
    free(u->global.buf.p);
    free(u->global.xattrs.p);
    free(u->sparse.p);
    free(u->dirs.p);
    free(u->dirpaths.p);
    free(u->created.slot);
    free(u);
}

static int run(struct ut *u)
{
    for (;;) {
        int r = next_header(u);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        int64_t size;
        if (header_num(u, 124, 12, &size) < 0)
            return -1;
        char type = (char)u->hdr[156];
        switch (type) {
        case 'x':
            pax_reset(&u->local);
            if (read_meta(u, &u->local.buf, (uint64_t)size) < 0 || parse_pax(u, &u->local, 0) < 0)
                return -1;
            continue;
        case 'g':
            if (read_global(u, (uint64_t)size) < 0)
                return -1;
            continue;
        case 'L':
            if (read_meta(u, &u->longname, (uint64_t)size) < 0)
                return -1;
            u->longname.len = strlen(u->longname.p);
            continue;
        case 'K':
            if (read_meta(u, &u->longlink, (uint64_t)size) < 0)
                return -1;
            u->longlink.len = strlen(u->longlink.p);
            continue;
        default:
            break;
        }
        if (build_entry(u) < 0)
            return -1;
        u->remaining = u->e.size;
        u->st->entries++;
        char t = u->e.type;
        int known = t == '0' || t == '\0' || (t >= '1' && t <= '6');
        if (!known) {
            u->st->skipped++; /* V (label), D (dumpdir), M, N, vendor types */
        } else if (extract(u) < 0) {
            return -1;
        }
        uint64_t pad = (512 - u->e.size % 512) % 512;
        if (skip_bytes(u, u->remaining + pad) < 0)
            return -1;
        u->remaining = 0;
        reset_local(u);
    }
    drain(u);
    u->e.plen = 0;
    return apply_dirs(u);
}

int rl_untar(int tar_fd, int root_dirfd, const struct rl_untar_opts *opts, struct rl_untar_stats *stats,
             struct rl_error *err)
{
    struct rl_untar_opts none;
    struct rl_untar_stats scratch;
    if (opts == NULL) {
        memset(&none, 0, sizeof(none));
        opts = &none;
    }
    if (stats == NULL)
        stats = &scratch;
    memset(stats, 0, sizeof(*stats));
    if ((opts->flags & RL_UNTAR_CHOWN) && (opts->flags & RL_UNTAR_OVERRIDE_STAT))
        return rl_error_set(err, EINVAL, RL_STAGE_UNTAR, "untar: CHOWN and OVERRIDE_STAT exclude each other");
    if ((opts->n_uids && opts->uids == NULL) || (opts->n_gids && opts->gids == NULL))
        return rl_error_set(err, EINVAL, RL_STAGE_UNTAR, "untar: id map pointer missing");

    struct ut *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return rl_error_set(err, ENOMEM, RL_STAGE_UNTAR, "untar: out of memory");
    u->rd.buf = malloc(RD_SIZE);
    if (u->rd.buf == NULL) {
        free(u);
        return rl_error_set(err, ENOMEM, RL_STAGE_UNTAR, "untar: out of memory");
    }
    u->rd.fd = tar_fd;
    u->root = root_dirfd;
    u->flags = opts->flags;
    u->opts = opts;
    u->st = stats;
    u->err = err;
    u->umask = mode_umask();
    u->fds[0] = root_dirfd;
    u->tmpfd = -1;
    u->sgid[0] = (unsigned char)fd_is_sgid(root_dirfd);
    u->euid = geteuid();
    u->egid = getegid();
    u->flatten = !(opts->flags & RL_UNTAR_OVERLAY);
    u->local.xattrs.item = u->global.xattrs.item = sizeof(struct xref);
    u->sparse.item = sizeof(struct region);
    u->dirs.item = sizeof(struct dirrec);

    int ret = run(u);
    release(u);
    return ret < 0 ? -1 : 0;
}
