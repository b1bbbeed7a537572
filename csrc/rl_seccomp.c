/* rl_seccomp.c: the default seccomp profile, a deny list in the spirit of docker's.
 *
 * A user namespace already takes away the host privileges; what is left to close
 * are kernel interfaces that are not namespaced, or are large attack surfaces even
 * for unprivileged callers. These return EPERM: the kernel keyring (keyctl,
 * add_key, request_key), bpf, perf_event_open, userfaultfd, kexec, kernel modules,
 * acct, swapon/swapoff, reboot, syslog. On x86_64 the i386 entry points of the same
 * calls are covered too, and x32 numbers are folded onto the native ones.
 * `--security-opt seccomp=unconfined` turns it off. Allocation-free (child only). */
#include "rootless.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static const int denied_native[] = {
    __NR_keyctl, __NR_add_key, __NR_request_key, __NR_bpf, __NR_perf_event_open,
#ifdef __NR_userfaultfd
    __NR_userfaultfd,
#endif
    __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_init_module, __NR_finit_module, __NR_delete_module, __NR_acct, __NR_swapon, __NR_swapoff,
    __NR_reboot, __NR_syslog,
};

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
/* i386 numbers of the same calls */
static const int denied_i386[] = {288, 286, 287, 357, 336, 374, 283, 128, 350, 129, 51, 87, 115, 88, 103};
#define X32_BIT 0x40000000U
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#endif

#define DENY (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))

int rl_install_default_seccomp(struct rl_error *err)
{
#ifndef NATIVE_ARCH
    (void)err;
    return 0; /* no profile for this architecture (documented) */
#else
    enum { N = sizeof(denied_native) / sizeof(denied_native[0]) };
#ifdef X32_BIT
    enum { M = sizeof(denied_i386) / sizeof(denied_i386[0]) };
#else
    enum { M = 0 };
#endif
    struct sock_filter prog[N + M + 16];
    size_t k = 0;
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
#ifdef X32_BIT
    /* arch == i386? check the i386 list */
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, (unsigned char)(M + 2));
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (size_t i = 0; i < M; i++)
        prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied_i386[i],
                                                 (unsigned char)(M - i + N + 3), 0);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    /* reload the arch for the native check */
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
#endif
    size_t arch_check = k;
    prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW); /* other ABIs: as the kernel decides */
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#ifdef X32_BIT
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_BIT);
#endif
    size_t first = k;
    for (size_t i = 0; i < N; i++)
        prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied_native[i], 0, 0);
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    size_t deny = k;
    prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, DENY);
    for (size_t i = 0; i < N; i++)
        prog[first + i].jt = (unsigned char)(deny - (first + i) - 1);
#ifdef X32_BIT
    /* the i386 matches jump to `deny` as well */
    for (size_t i = 0; i < M; i++)
        prog[3 + i].jt = (unsigned char)(deny - (3 + i) - 1);
    (void)arch_check;
#else
    (void)arch_check;
#endif
    struct sock_fprog fprog = {.len = (unsigned short)k, .filter = prog};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) < 0)
        return rl_error_set(err, errno, RL_STAGE_EXEC, "cannot install the default seccomp profile");
    return 0;
#endif
}
