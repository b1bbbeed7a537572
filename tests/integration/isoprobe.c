/* isoprobe: a static program the isolation tests (test_isolation.py) run inside
 * containers. It tries, from the inside, what a hostile image would try, and prints
 * one line per attempt; it never changes anything outside the container unless an
 * isolation boundary is broken (and the test then fails).
 *
 *   isoprobe escape HOSTDIR   reach or create files in HOSTDIR (a host directory the
 *                             container was not given) through /proc/<pid>/root,
 *                             chroot and fchdir escapes, umount of /, pivot_root,
 *                             open_by_handle_at: "<trick> blocked|ESCAPED"
 *   isoprobe seccomp          "<call> <ret> <errno>" for calls of the default profile
 *   isoprobe ids              "<uid> <euid>" (for the setuid test)
 *   isoprobe fds              "<fd> <target>" for every open fd but the one listing
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *hostdir;

/* 1 when `dir`/marker is visible or `dir`/pwned-<trick> can be created. */
static int reaches(const char *prefix, const char *trick)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s/marker", prefix, hostdir);
    if (access(path, F_OK) == 0)
        return 1;
    snprintf(path, sizeof(path), "%s%s/pwned-%s", prefix, hostdir, trick);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    return 0;
}

static void climb(void)
{
    for (int i = 0; i < 64; i++)
        if (chdir("..") < 0)
            break;
}

/* Each trick runs in its own child (chroot and umount change the process). */
static int trick(const char *name)
{
    char prefix[PATH_MAX] = "";
    if (strcmp(name, "direct") == 0)
        return reaches("", name);
    if (strcmp(name, "proc-pid-root") == 0) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        int hit = 0;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            snprintf(prefix, sizeof(prefix), "/proc/%s/root", e->d_name);
            hit |= reaches(prefix, name);
            snprintf(prefix, sizeof(prefix), "/proc/%s/cwd/../../../../../../..", e->d_name);
            hit |= reaches(prefix, name);
        }
        return hit;
    }
    if (strcmp(name, "chroot-dotdot") == 0) {
        mkdir("/tmp/jail1", 0755);
        if (chroot("/tmp/jail1") < 0)
            return 0;
        climb();
        if (chroot(".") < 0)
            return 0;
        return reaches("", name);
    }
    if (strcmp(name, "chroot-fchdir") == 0) {
        int fd = open("/", O_RDONLY | O_DIRECTORY);
        mkdir("/tmp/jail2", 0755);
        if (fd < 0 || chroot("/tmp/jail2") < 0 || fchdir(fd) < 0)
            return 0;
        climb();
        if (chroot(".") < 0)
            return 0;
        return reaches("", name);
    }
    /* umount and pivot_root act on the whole mount namespace: try them in a copy
     * (which keeps the locks), so that a success does not pull the container's root
     * from under the tests' shell. */
    if (strcmp(name, "umount-root") == 0) {
        if (unshare(CLONE_NEWNS) < 0)
            return 0;
        umount2("/", MNT_DETACH);
        umount2("/proc", MNT_DETACH);
        if (chdir("/") == 0)
            climb();
        return reaches("", name) || reaches("/proc/1/root", name);
    }
    if (strcmp(name, "pivot-root") == 0) {
        if (unshare(CLONE_NEWNS) < 0)
            return 0;
        mkdir("/tmp/pr", 0755);
        if (mount("none", "/tmp/pr", "tmpfs", 0, NULL) < 0)
            return 0;
        mkdir("/tmp/pr/old", 0755);
        if (syscall(SYS_pivot_root, "/tmp/pr", "/tmp/pr/old") < 0)
            return 0;
        if (chdir("/old") == 0)
            climb();
        return reaches("/old", name) || reaches(".", name);
    }
    if (strcmp(name, "open-by-handle") == 0) {
        /* the "shocker" call: needs CAP_DAC_READ_SEARCH over the host */
        struct {
            struct file_handle h;
            unsigned char pad[128];
        } fh;
        int mount_id;
        fh.h.handle_bytes = 128;
        int root = open("/", O_RDONLY | O_DIRECTORY);
        if (root < 0 || name_to_handle_at(AT_FDCWD, "/", &fh.h, &mount_id, 0) < 0)
            return 0;
        return open_by_handle_at(root, &fh.h, O_RDONLY) >= 0;
    }
    return 0;
}

static int escape(void)
{
    static const char *const tricks[] = {"direct", "proc-pid-root", "chroot-dotdot", "chroot-fchdir",
                                         "umount-root", "pivot-root", "open-by-handle"};
    for (size_t i = 0; i < sizeof(tricks) / sizeof(tricks[0]); i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(trick(tricks[i]) ? 1 : 0);
        int status = 0;
        waitpid(pid, &status, 0);
        int escaped = WIFEXITED(status) && WEXITSTATUS(status) == 1;
        printf("%s %s\n", tricks[i], escaped ? "ESCAPED" : "blocked");
    }
    return 0;
}

#ifdef __x86_64__
static long int80(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}
#endif

static void report(const char *name, long ret)
{
    printf("%s %s\n", name, ret < 0 ? strerrorname_np(errno) : "ok");
}

static int seccomp_calls(void)
{
    errno = 0;
    report("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    report("add_key", syscall(SYS_add_key, "user", "isoprobe", "x", 1, 0)); /* keyring 0: EINVAL unfiltered */
    report("request_key", syscall(SYS_request_key, "user", "isoprobe", NULL, 0));
    report("bpf", syscall(SYS_bpf, 5, NULL, 0));
    report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    report("syslog", syscall(SYS_syslog, 10, NULL, 0));
#ifdef __x86_64__
    /* the same keyctl through the i386 entry point (288) and an x32 number */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        long r = int80(288, 0, -3, 0);
        printf("keyctl-i386 %s\n", r < 0 ? strerrorname_np((int)-r) : "ok");
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status))
        printf("keyctl-i386 unavailable\n");
    report("keyctl-x32", syscall(0x40000000 | SYS_keyctl, 0, -3, 0));
#endif
    fflush(stdout);
    pid_t pid2 = fork();
    if (pid2 == 0) {
        printf("unshare-user %s\n", unshare(CLONE_NEWUSER) == 0 ? "ok" : strerrorname_np(errno));
        fflush(stdout);
        _exit(0);
    }
    int status2;
    waitpid(pid2, &status2, 0);
    return 0;
}

static int fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        char link[PATH_MAX], target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n < 0 ? 0 : n] = '\0';
        printf("%s %s\n", e->d_name, target);
    }
    closedir(d);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "escape") == 0) {
        hostdir = argv[2];
        return escape();
    }
    if (argc >= 2 && strcmp(argv[1], "seccomp") == 0)
        return seccomp_calls();
    if (argc >= 2 && strcmp(argv[1], "ids") == 0) {
        printf("%u %u\n", getuid(), geteuid());
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "fds") == 0)
        return fds();
    fprintf(stderr, "usage: isoprobe escape HOSTDIR | seccomp | ids | fds\n");
    return 2;
}
