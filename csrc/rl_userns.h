/* rl_userns.h: namespace steps for a child that Python forked itself
 * (cdef-parsable, appended to rl_api.h).
 *
 * The overlay tools (diff, commit, cp, export) must read and write trees whose
 * files belong to the container's ids, which only a process inside a user
 * namespace holding the container's id map may do. The CLI is single-threaded,
 * so it uses os.fork() (Python's own fork, which keeps the interpreter sound in
 * the child), and the child calls these wrappers and then keeps running Python:
 *
 *   child:  rl_ns_unshare(RL_NS_USER [| RL_NS_MOUNT]) -> tells the parent -> waits
 *   parent: rootless.runtime.idmap.apply(mapping, pid) -> tells the child to go
 *   child:  (optionally rl_ns_mount_overlay) -> the work -> os._exit()
 *
 * or, for a running container, rl_ns_join(pid, RL_NS_USER) (no maps to write).
 * Each sets PR_SET_PDEATHSIG so the child never outlives the CLI. */

#define RL_NS_USER 1
#define RL_NS_MOUNT 2

/* unshare() the namespaces in `which` (RL_NS_*). */
int rl_ns_unshare(int which, struct rl_error *err);

/* setns() into the namespaces `which` of process `pid` (user first). */
int rl_ns_join(int pid, int which, struct rl_error *err);

/* In a private mount namespace: make every mount private, chdir(dir) so that
 * relative lowerdirs resolve, mount overlay `data` on `target`, chdir("/"). */
int rl_ns_mount_overlay(const char *dir, const char *data, const char *target, struct rl_error *err);
