/* rl_idmap.c: write a child's uid/gid maps directly (the single-id case, or root). */
#include "rootless.h"

#include <stdio.h>

static size_t append_u32(char *buf, size_t pos, size_t cap, uint32_t v)
{
    char tmp[12];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && pos + 1 < cap)
        buf[pos++] = tmp[--n];
    return pos;
}

static int format_map(char *buf, size_t cap, const struct rl_idmap *m, size_t n)
{
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        pos = append_u32(buf, pos, cap, m[i].inside);
        if (pos + 1 < cap) buf[pos++] = ' ';
        pos = append_u32(buf, pos, cap, m[i].outside);
        if (pos + 1 < cap) buf[pos++] = ' ';
        pos = append_u32(buf, pos, cap, m[i].count);
        if (pos + 1 < cap) buf[pos++] = '\n';
    }
    if (pos + 1 >= cap)
        return -1;
    buf[pos] = '\0';
    return (int)pos;
}

static int write_proc(int dirfd, const char *name, const char *data, size_t len, struct rl_error *err)
{
    RL_CLEANUP_CLOSE int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return rl_error_set(err, errno, RL_STAGE_IDMAP, "cannot open %s", name);
    ssize_t n = write(fd, data, len);
    if (n != (ssize_t)len)
        return rl_error_set(err, n < 0 ? errno : EIO, RL_STAGE_IDMAP, "cannot write %s", name);
    return 0;
}

int rl_set_idmap(int pid, const struct rl_idmap *uids, size_t n_uids,
                 const struct rl_idmap *gids, size_t n_gids, int deny_setgroups,
                 struct rl_error *err)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d", pid);
    RL_CLEANUP_CLOSE int dirfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return rl_error_set(err, errno, RL_STAGE_IDMAP, "cannot open %s", path);
    int len = format_map(buf, sizeof(buf), uids, n_uids);
    if (len < 0)
        return rl_error_set(err, E2BIG, RL_STAGE_IDMAP, "uid map too long");
    if (write_proc(dirfd, "uid_map", buf, (size_t)len, err) < 0)
        return -1;
    if (deny_setgroups && write_proc(dirfd, "setgroups", "deny", 4, err) < 0)
        return -1;
    len = format_map(buf, sizeof(buf), gids, n_gids);
    if (len < 0)
        return rl_error_set(err, E2BIG, RL_STAGE_IDMAP, "gid map too long");
    return write_proc(dirfd, "gid_map", buf, (size_t)len, err);
}
