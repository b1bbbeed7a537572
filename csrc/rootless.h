/* rootless.h: internal header for the C core. */
#ifndef ROOTLESS_H
#define ROOTLESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "rl_api.h"
#include "rl_untar.h"
#include "rl_job.h"
#include "rl_userns.h"

#define RL_CLEANUP_CLOSE __attribute__((cleanup(rl_cleanup_close)))

/* rl_error.c: fill err (async-signal-safe formatting: %s %d %u %x only). Returns -1. */
int rl_error_set(struct rl_error *err, int errnum, int stage, const char *fmt, ...);
void rl_cleanup_close(int *fd);

/* rl_resolve.c: open `path` below `rootfd` without ever leaving it.
 * openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), with a userspace walk as fallback.
 * `oflags` are open(2) flags (O_PATH etc.). Returns an fd, or -1 with errno set. */
int rl_open_in_root(int rootfd, const char *path, int oflags, mode_t mode);
/* mkdir -p `path` below rootfd; returns an O_PATH|O_DIRECTORY fd, or -1 with errno. */
int rl_mkdir_in_root(int rootfd, const char *path, mode_t mode);
/* Like rl_open_in_root but creates an empty regular file when missing. */
int rl_mkfile_in_root(int rootfd, const char *path, mode_t mode);
/* 1 if openat2 is usable, 0 if not (cached). */
int rl_have_openat2(void);

/* rl_mount.c: mount table + pivot_root (child only). */
int rl_build_root(const struct rl_spawn_config *cfg, struct rl_error *err);
/* Run cfg's RL_OP_HELPERs for the waiting child `pid`, outside its PID namespace
 * (parent only). */
int rl_run_helpers(int pid, const struct rl_spawn_config *cfg, struct rl_error *err);

/* rl_fakeroot.c: seccomp filter for root emulation (child only). */
/* record: the chown family becomes a user notification; *listener gets its fd. */
int rl_install_fakeroot(int record, int *listener, struct rl_error *err);

/* rl_seccomp.c: the default seccomp profile (child only). */
int rl_install_default_seccomp(struct rl_error *err);

/* rl_util.c */
int rl_write_all(int fd, const void *buf, size_t len);
size_t rl_strlcpy(char *dst, const char *src, size_t size);

#endif
