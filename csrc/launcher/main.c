/* main.c: the `rootless` command.
 *
 * A Python interpreter needs about 10 ms to start, more than a whole container
 * start in C. So the command is this small program: for `run --rm` it looks for a
 * run plan that the Python CLI wrote the last time the very same command line ran
 * with the same environment, directory and user (plan.c). A valid plan is carried
 * out here, with the same C core the Python CLI uses. Everything else (and a
 * missing or stale plan) execs the Python CLI, telling it where to write the plan.
 *
 * The Python interpreter is, in this order: $ROOTLESS_PYTHON, python3 (or python)
 * next to this program (a virtual environment's bin/), the interpreter that built
 * it (RL_PYTHON), then python3 on $PATH.
 */
#include "launcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

extern char **environ;

#ifndef RL_PYTHON
#define RL_PYTHON "/usr/bin/python3"
#endif

#define PY_MAIN "from rootless.cli.launch import main; main()"

int rl_buf_add(struct rl_buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int rl_buf_add_str(struct rl_buf *b, const char *s)
{
    return rl_buf_add(b, s, strlen(s) + 1);
}

/* `rootless [globals] run ... --rm ...`: the only command a plan can stand for.
 * The Python CLI decides whether this particular run may be planned. */
static int may_have_plan(int argc, char **argv)
{
    int j = 1;
    while (j < argc && strcmp(argv[j], "run") != 0)
        j++;
    for (j++; j < argc; j++)
        if (strcmp(argv[j], "--rm") == 0)
            return 1;
    return 0;
}

/* What a plan is valid for: user, directory and command line, exactly. A "shape"
 * key (k >= 0) holds only the first k arguments: its plan stands for any command
 * after them (the container's command and its arguments, which vary from one run
 * of a batch job to the next). The environment is not in the key: a plan lists the
 * variables its run read, with their values (plan.c). rootless/runtime/plan.py
 * builds the same bytes (key_material). */
static int build_key(struct rl_buf *key, int argc, char **argv, int k)
{
    char num[64], cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return -1;
    snprintf(num, sizeof(num), "%u:%u", (unsigned)getuid(), (unsigned)getgid());
    if (rl_buf_add_str(key, "rootless-plan 2") < 0 || rl_buf_add_str(key, num) < 0 ||
        rl_buf_add_str(key, cwd) < 0)
        return -1;
    int n = k >= 0 ? k : argc - 1;
    snprintf(num, sizeof(num), k >= 0 ? "%d+" : "%d", n);
    if (rl_buf_add_str(key, num) < 0)
        return -1;
    for (int i = 1; i <= n; i++)
        if (rl_buf_add_str(key, argv[i]) < 0)
            return -1;
    return 0;
}

static uint64_t fnv1a64(const char *data, size_t len)
{
    return rl_fnv1a64(0xcbf29ce484222325ULL, data, len);
}

uint64_t rl_fnv1a64(uint64_t h, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)data[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t rl_env_hash(void)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (char **e = environ; *e != NULL; e++)
        if (strncmp(*e, RL_PLAN_ENV_PREFIX, sizeof(RL_PLAN_ENV_PREFIX) - 1) != 0)
            h = rl_fnv1a64(h, *e, strlen(*e) + 1);
    return h;
}

/* A directory of ours that nobody else can write, or 0. */
static int private_dir(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT; /* the Python CLI creates it 0700 */
    return S_ISDIR(st.st_mode) && st.st_uid == getuid() && (st.st_mode & 022) == 0;
}

/* <runroot>/plans, with runroot chosen as rootless.paths.default_runroot does. */
static int plans_dir(char *out, size_t cap)
{
    char runroot[4096];
    const char *env = getenv("ROOTLESS_RUNROOT");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (env != NULL && env[0] == '/') {
        snprintf(runroot, sizeof(runroot), "%s", env);
    } else if (env != NULL && env[0] != '\0') {
        return -1; /* relative: leave it to the Python CLI */
    } else if (xdg != NULL && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) &&
               access(xdg, W_OK) == 0) {
        snprintf(runroot, sizeof(runroot), "%s/rootless", xdg);
    } else {
        snprintf(runroot, sizeof(runroot), "/tmp/rootless-%u", (unsigned)getuid());
        if (lstat(runroot, &st) == 0 && st.st_uid != getuid())
            return -1; /* someone else's: the Python CLI picks another name */
    }
    if (!private_dir(runroot))
        return -1;
    int n = snprintf(out, cap, "%s/plans", runroot);
    if (n < 0 || (size_t)n >= cap || !private_dir(out))
        return -1;
    return 0;
}

int rl_plan_trace;

void rl_plan_say(const char *what, const char *why)
{
    if (rl_plan_trace)
        fprintf(stderr, "rootless: plan %s: %s\n", what, why);
}

/* exec the Python CLI with `rest` (NULL-terminated) as its arguments; returns only on failure */
static int exec_python_args(char *const rest[])
{
    size_t n = 0;
    while (rest[n] != NULL)
        n++;
    char **args = calloc(n + 5, sizeof(char *));
    if (args == NULL) {
        fprintf(stderr, "rootless: out of memory\n");
        return 125;
    }
    args[1] = "-P"; /* never import from the current directory */
    args[2] = "-c";
    args[3] = PY_MAIN;
    for (size_t i = 0; i < n; i++)
        args[i + 4] = rest[i];
    args[n + 4] = NULL;

    const char *forced = getenv("ROOTLESS_PYTHON");
    if (forced != NULL && forced[0] != '\0') {
        args[0] = (char *)forced;
        execvp(forced, args);
        fprintf(stderr, "rootless: cannot run $ROOTLESS_PYTHON %s: %s\n", forced, strerror(errno));
        return 127;
    }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 16);
    if (len > 0) {
        self[len] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            static const char *const names[] = {"python3", "python"};
            for (size_t i = 0; i < 2; i++) {
                strcpy(slash + 1, names[i]);
                if (access(self, X_OK) == 0) {
                    args[0] = self;
                    execv(self, args);
                }
            }
        }
    }
    if (access(RL_PYTHON, X_OK) == 0) {
        args[0] = RL_PYTHON;
        execv(RL_PYTHON, args);
    }
    args[0] = "python3";
    execvp("python3", args);
    fprintf(stderr, "rootless: cannot find the Python interpreter rootless is installed in "
                    "(set ROOTLESS_PYTHON to it): %s\n", strerror(errno));
    return 127;
}

int main(int argc, char **argv)
{
    const char *cache = getenv("ROOTLESS_PLAN_CACHE");
    rl_plan_trace = getenv("ROOTLESS_PLAN_TRACE") != NULL;
    unsetenv(RL_PLAN_OUT_ENV); /* only ever set by this program, for its own child */
    if ((cache == NULL || strcmp(cache, "0") != 0) && may_have_plan(argc, argv)) {
        char dir[4200], path[4300];
        struct rl_buf key = {NULL, 0, 0};
        if (plans_dir(dir, sizeof(dir)) < 0) {
            rl_plan_say("off", "no private run directory");
        } else if (build_key(&key, argc, argv, -1) < 0) {
            rl_plan_say("off", "cannot build the key");
        } else {
            snprintf(path, sizeof(path), "%s/%016llx", dir,
                     (unsigned long long)fnv1a64(key.data, key.len));
            int status = rl_plan_run(path, &key, NULL, 0);
            if (status >= 0)
                return status;
            if (status == RL_PLAN_NONE) {
                /* a plan for these leading arguments and any command after them */
                for (int k = argc - 2; k >= 1; k--) {
                    char shape[4300];
                    struct rl_buf skey = {NULL, 0, 0};
                    if (build_key(&skey, argc, argv, k) < 0)
                        break;
                    snprintf(shape, sizeof(shape), "%s/%016llx", dir,
                             (unsigned long long)fnv1a64(skey.data, skey.len));
                    if (access(shape, F_OK) == 0) {
                        status = rl_plan_run(shape, &skey, argv + k + 1, argc - k - 1);
                        if (status >= 0)
                            return status;
                        free(skey.data);
                        break;
                    }
                    free(skey.data);
                }
            }
            if (status == RL_PLAN_NONE)
                rl_plan_say("miss", "none yet");
            setenv(RL_PLAN_OUT_ENV, path, 1);
        }
        free(key.data);
    }
    return exec_python_args(argv + 1);
}
