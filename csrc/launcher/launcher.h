/* launcher.h: the `rootless` command's native front end (csrc/launcher/).
 *
 * main.c decides whether an invocation may use a cached run plan, finds the plan
 * file, and otherwise execs the Python CLI. plan.c reads, checks and carries out a
 * plan with the same C core (rl_spawn, rl_set_idmap, rl_continue) that the Python
 * CLI drives through cffi. See docs/architecture.md, "Run plans".
 */
#ifndef ROOTLESS_LAUNCHER_H
#define ROOTLESS_LAUNCHER_H

#include "../rootless.h"

/* A growable byte buffer (key material). */
struct rl_buf {
    char *data;
    size_t len;
    size_t cap;
};

int rl_buf_add(struct rl_buf *b, const void *data, size_t len);
int rl_buf_add_str(struct rl_buf *b, const char *s); /* with its NUL */

/* Environment variables that steer the cache itself; they are not part of the key. */
#define RL_PLAN_ENV_PREFIX "ROOTLESS_PLAN"
#define RL_PLAN_OUT_ENV "ROOTLESS_PLAN_OUT"

/* 1 when $ROOTLESS_PLAN_TRACE is set: say on stderr why a plan was or was not used. */
extern int rl_plan_trace;
void rl_plan_say(const char *what, const char *why);

/* Run the plan at `path` if it exists and still holds for `key`.
 * Returns the container's exit status (>= 0) when it ran; -1 when the plan is
 * missing, stale or could not start the command (the caller falls back to the
 * Python CLI, which then says what is wrong). */
int rl_plan_run(const char *path, const struct rl_buf *key);

#endif
