/* rl_fakeroot.c: root emulation for a one-id user namespace.
 *
 * With a single-id mapping, package managers fail on chown, on switching users and
 * on creating device nodes. This seccomp filter makes exactly those calls return
 * success without doing anything (as charliecloud's and enroot's seccomp modes do):
 * the chown family, the setuid/setgid/setgroups/setres* family, and mknod of
 * character and block devices. Everything else runs normally. Allocation-free; runs
 * in the child right before execve, after no_new_privs. */
#include "rootless.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define RL_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define RL_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RL_AUDIT_ARCH AUDIT_ARCH_PPC64LE
#endif

#define NR_OFF offsetof(struct seccomp_data, nr)
#define ARCH_OFF offsetof(struct seccomp_data, arch)
#define ARG_LO(n) (offsetof(struct seccomp_data, args) + 8 * (n))

/* Syscalls that simply succeed. The chown family comes first (N_CHOWN entries): with
 * recording, those go to the supervisor instead. */
static const int fake_ok[] = {
#ifdef __NR_chown
    __NR_chown,
#endif
#ifdef __NR_lchown
    __NR_lchown,
#endif
    __NR_fchown, __NR_fchownat, __NR_setuid, __NR_setgid, __NR_setgroups, __NR_setreuid,
    __NR_setregid, __NR_setresuid, __NR_setresgid, __NR_setfsuid, __NR_setfsgid,
};

#ifdef __NR_chown
#define N_CHOWN_A 1
#else
#define N_CHOWN_A 0
#endif
#ifdef __NR_lchown
#define N_CHOWN_B 1
#else
#define N_CHOWN_B 0
#endif
#define N_CHOWN (N_CHOWN_A + N_CHOWN_B + 2)

int rl_install_fakeroot(int record, int *listener, struct rl_error *err)
{
#ifndef RL_AUDIT_ARCH
    return rl_error_set(err, ENOSYS, RL_STAGE_EXEC, "--fakeroot is not supported on this architecture");
#else
    enum { N = sizeof(fake_ok) / sizeof(fake_ok[0]) };
    struct sock_filter prog[N + 26];
    size_t k = 0;
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARCH_OFF);
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RL_AUDIT_ARCH, 1, 0);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF);
    /* each listed call: jump to the "succeed" return at the end of the list */
    for (size_t i = 0; i < N; i++)
        prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)fake_ok[i],
                                                 (unsigned char)(N - i + 9), 0);
    /* mknodat(dirfd, path, mode, dev): fake only device nodes (mode arg 2) */
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mknodat, 0, 3);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2));
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0); /* to the device check (patched) */
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
#ifdef __NR_mknod
    /* mknod(path, mode, dev): mode is arg 1 */
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mknod, 0, 2);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1));
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0); /* to the device check (patched) */
#else
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
#endif
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    /* device check: (mode & S_IFMT) == S_IFCHR or S_IFBLK -> succeed, else allow */
    size_t devcheck = k;
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, S_IFMT);
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, S_IFCHR, 3, 0);
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, S_IFBLK, 2, 0);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    size_t succeed = k;
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0);
    size_t notify = k;
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
    /* patch jumps now that the layout is known (jt/jf are relative to the next insn);
     * with `record`, the chown family (the first N_CHOWN entries) goes to the supervisor */
    for (size_t i = 0; i < N; i++) {
        size_t to = (record && i < N_CHOWN) ? notify : succeed;
        prog[4 + i].jt = (unsigned char)(to - (4 + i) - 1);
    }
    size_t mknodat_at = 4 + N;
    prog[mknodat_at].jf = 3;                                            /* not mknodat: next test */
    prog[mknodat_at + 2] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, (unsigned)(devcheck - (mknodat_at + 2) - 1), 0, 0);
#ifdef __NR_mknod
    size_t mknod_at = mknodat_at + 4; /* its "no" branch (jf = 2) is the RET ALLOW before devcheck */
    prog[mknod_at + 2] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, (unsigned)(devcheck - (mknod_at + 2) - 1), 0, 0);
#endif
    struct sock_fprog fprog = {.len = (unsigned short)k, .filter = prog};
    if (record) {
        long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
        if (fd < 0)
            return rl_error_set(err, errno, RL_STAGE_EXEC, "cannot install the --fakeroot seccomp filter");
        *listener = (int)fd;
        return 0;
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) < 0)
        return rl_error_set(err, errno, RL_STAGE_EXEC, "cannot install the --fakeroot seccomp filter");
    return 0;
#endif
}
