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

uint64_t rl_fnv1a64(uint64_t h, const char *data, size_t len);
/* FNV-1a of the environment (each entry with its NUL), less ROOTLESS_PLAN*. */
uint64_t rl_env_hash(void);

/* 1 when $ROOTLESS_PLAN_TRACE is set: say on stderr why a plan was or was not used. */
extern int rl_plan_trace;
void rl_plan_say(const char *what, const char *why);

/* The container record of a planned `run --rm IMAGE` (container.c). */
struct rl_ctr_file {
    const char *name;
    const char *text;
};

struct rl_ctr_plan {
    const char *template_id;        /* the id the plan was written for (64 hex) */
    const char *containers_dir;     /* <root>/containers */
    const char *run_containers_dir; /* <runroot>/containers */
    const char *store_lock;         /* <root>/store.lock */
    const char *config_prefix;      /* config.json without id, name, created and the last } */
    const char *config_suffix;      /* shape plans: config.json after the command's arguments */
    char **tail;                    /* shape plans: the command's arguments, to go between */
    int n_tail;
    const char *fixed_name;         /* --name, or NULL: adjective_surname */
    const char *adjectives, *surnames;
    struct rl_ctr_file files[8];    /* hosts, hostname, resolv.conf for the run directory */
    size_t n_files;
    char id[65];
    char name[256];
    char dir[4300];
    char run_dir[4300];
    int created;
    int hold_fd; /* the container's mount namespace, or -1: its teardown (the overlay's
                    umount) happens when the deleting child closes it, not in our wait */
};

int rl_ctr_new_id(char out[65]);
/* Put new_id wherever the plan holds old_id (and its 12-character prefix). */
void rl_ctr_retemplate(char *data, size_t size, const char *old_id, const char *new_id);
/* Make the record (under the store lock; still_valid(arg) rechecks the plan there). */
int rl_ctr_create(struct rl_ctr_plan *cp, int (*still_valid)(void *), void *arg);
/* state.json once the container's command runs. */
int rl_ctr_started(const struct rl_ctr_plan *cp, int pid);
/* Remove the record: out of `ps` and its name freed at once, its files deleted by a
 * detached child when `background` (map_ids writes a job child's id maps, for files
 * of subordinate ids; NULL when the container had no such ids). */
int rl_ctr_remove(const struct rl_ctr_plan *cp, int background, int (*map_ids)(void *, int), void *arg);

#define RL_PLAN_UNUSABLE (-1) /* stale, refused, or it could not start the command */
#define RL_PLAN_NONE (-2)     /* no plan file */

/* Run the plan at `path` if it exists and still holds for `key`; `tail` (n_tail
 * strings) is the command of a shape plan, else NULL.
 * Returns the container's exit status (>= 0) when it ran; RL_PLAN_NONE or
 * RL_PLAN_UNUSABLE when it did not (the caller falls back to the Python CLI,
 * which then says what is wrong). */
int rl_plan_run(const char *path, const struct rl_buf *key, char **tail, int n_tail);

#endif
