/* untar_driver.c: rl_untar on fuzz inputs, without Python.
 *
 * The input format is tests/fuzz/fuzz_untar.py's: one mode byte (bit 2 overlay,
 * 3 userxattr, 4 no_devices, 5-6 own: 1 chown, 2 override_stat; bit 7 keeps the
 * header checksums, else they are fixed up), then the tar stream. The gzip
 * sources (mode & 3 == 1, 2) are unpacked as plain tars here. Each input goes
 * through a memfd into a fresh root/ below a scratch directory, which is then
 * removed with rl_rmtree_at. The sentinel/ next to root/ must stay untouched.
 *
 * Two builds:
 *   replay (gcc or clang; scripts/sanitize.sh builds it with ASan/UBSan):
 *     untar_driver FILE|DIR...      every file, each DIR's files
 *   libFuzzer, coverage-guided on the C itself (clang only):
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -DRL_FUZZER \
 *       -D_GNU_SOURCE -DRL_VERSION='"fuzz"' -Icsrc csrc/tests/untar_driver.c \
 *       csrc/rl_*.c -o untar-fuzz
 *     ./untar-fuzz -dict=tests/fuzz/untar.dict CORPUS-DIR tests/fuzz/corpus/untar
 * As root, run either inside a scratch directory mounted nodev (the driver
 * refuses to create device nodes elsewhere: it forces no_devices).
 *
 * ROOTLESS_FUZZ_SCRATCH: where the scratch directory goes (default /tmp). */
#include "rootless.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

static char base[4096];
static int base_fd = -1;
static int devices_ok;
static struct stat sentinel_before;

static void die(const char *what)
{
    perror(what);
    abort();
}

static void setup(void)
{
    if (base_fd >= 0)
        return;
    const char *dir = getenv("ROOTLESS_FUZZ_SCRATCH");
    snprintf(base, sizeof(base), "%s/rl-untar-driver-XXXXXX", dir && *dir ? dir : "/tmp");
    if (mkdtemp(base) == NULL)
        die("mkdtemp");
    base_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (base_fd < 0 || mkdirat(base_fd, "sentinel", 0755) < 0)
        die("scratch");
    int fd = openat(base_fd, "sentinel/secret", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "secret\n", 7) != 7 || close(fd) < 0)
        die("sentinel");
    if (fstatat(base_fd, "sentinel/secret", &sentinel_before, AT_SYMLINK_NOFOLLOW) < 0)
        die("stat sentinel");
    struct statvfs sv;
    devices_ok = geteuid() != 0 || (fstatvfs(base_fd, &sv) == 0 && (sv.f_flag & ST_NODEV));
}

static uint64_t octal(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\0'))
        i++;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++)
        v = v * 8 + (uint64_t)(p[i] - '0');
    return v;
}

/* As fuzz_untar.fix_checksums: every block a tar reader takes for a header. */
static void fix_checksums(unsigned char *buf, size_t len)
{
    size_t off = 0;
    while (off + 512 <= len) {
        unsigned char *h = buf + off;
        int zero = 1;
        for (int i = 0; i < 512 && zero; i++)
            zero = h[i] == 0;
        if (zero)
            break;
        memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (int i = 0; i < 512; i++)
            sum += h[i];
        char chk[9];
        snprintf(chk, sizeof(chk), "%06o", sum & 0777777);
        memcpy(h + 148, chk, 6);
        h[154] = '\0';
        h[155] = ' ';
        uint64_t size = octal(h + 124, 12);
        if (h[156] >= '1' && h[156] <= '6')
            size = 0;
        if (size > len)
            break;
        off += 512 + (size + 511) / 512 * 512;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    setup();
    unsigned mode = data[0];
    unsigned char *tar = malloc(size);
    if (tar == NULL)
        die("malloc");
    memcpy(tar, data + 1, size - 1);
    if (!(mode & 128) && (mode & 3) != 2)
        fix_checksums(tar, size - 1);

    struct rl_untar_opts opts;
    memset(&opts, 0, sizeof(opts));
    unsigned own = (mode >> 5) & 3;
    opts.flags = ((mode & 4) ? RL_UNTAR_OVERLAY : 0) | ((mode & 8) ? RL_UNTAR_USERXATTR : 0) |
                 ((mode & 16) || !devices_ok ? RL_UNTAR_NO_DEVICES : 0) |
                 (own == 1 && geteuid() == 0 ? RL_UNTAR_CHOWN : 0) | (own == 2 ? RL_UNTAR_OVERRIDE_STAT : 0);

    int mfd = memfd_create("layer", MFD_CLOEXEC);
    if (mfd < 0 || rl_write_all(mfd, tar, size - 1) < 0 || lseek(mfd, 0, SEEK_SET) < 0)
        die("memfd");
    free(tar);
    if (mkdirat(base_fd, "root", 0755) < 0)
        die("mkdir root");
    int root = openat(base_fd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        die("open root");
    struct rl_untar_stats stats;
    struct rl_error err;
    memset(&err, 0, sizeof(err));
    if (rl_untar(mfd, root, &opts, &stats, &err) < 0 && memchr(err.msg, '\n', strlen(err.msg)) != NULL) {
        fprintf(stderr, "multi-line error: %s\n", err.msg);
        abort();
    }
    close(root);
    close(mfd);

    struct stat now;
    if (fstatat(base_fd, "sentinel/secret", &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_ino != sentinel_before.st_ino ||
        now.st_nlink != 1 || now.st_size != sentinel_before.st_size || now.st_mode != sentinel_before.st_mode ||
        now.st_uid != sentinel_before.st_uid || now.st_mtim.tv_sec != sentinel_before.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != sentinel_before.st_mtim.tv_nsec) {
        fprintf(stderr, "the sentinel outside the root changed\n");
        abort();
    }
    if (rl_rmtree_at(base_fd, "root", &err) < 0) {
        fprintf(stderr, "rmtree: %s\n", err.msg);
        abort();
    }
    return 0;
}

#ifndef RL_FUZZER
static int replay_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        perror(path);
        return -1;
    }
    uint8_t *data = malloc((size_t)sb.st_size + 1);
    ssize_t n = data ? read(fd, data, (size_t)sb.st_size) : -1;
    close(fd);
    if (n != sb.st_size) {
        perror(path);
        free(data);
        return -1;
    }
    LLVMFuzzerTestOneInput(data, (size_t)n);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    int count = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            while (d != NULL && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                    continue;
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                bad += replay_file(path) < 0;
                count++;
            }
            if (d != NULL)
                closedir(d);
        } else {
            bad += replay_file(argv[i]) < 0;
            count++;
        }
    }
    if (base_fd >= 0) {
        struct rl_error err;
        char *slash = strrchr(base, '/');
        *slash = '\0';
        int parent = open(*base ? base : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0 || rl_rmtree_at(parent, slash + 1, &err) < 0)
            fprintf(stderr, "cannot remove %s/%s\n", base, slash + 1);
        if (parent >= 0)
            close(parent);
        close(base_fd);
    }
    printf("untar_driver: %d inputs\n", count);
    return bad ? 1 : 0;
}
#endif
