/* An echo server that hardens itself first; the first input line says how:
 *   plain            nothing
 *   mdwe             prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)
 *   seccomp-mdwe     a seccomp filter like systemd's MemoryDenyWriteExecute=
 *   seccomp-kill-memfd  a seccomp filter that kills the process on memfd_create
 * It then proves the hardening is in force (an anonymous W+X mmap must fail),
 * prints "ready <mode> <errno of that mmap>", and answers each line with reply(). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

__attribute__((noinline)) const char *reply(void) { return "v2"; }

#define ARG_LO(n) (offsetof(struct seccomp_data, args) + 8 * (n))
#define LOAD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define DENY BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

/* systemd's MemoryDenyWriteExecute= as a filter (other architectures allowed, like systemd's per-arch rules). */
static struct sock_filter mdwe_filter[] = {
    LOAD(offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    ALLOW,
    LOAD(offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 4, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 8, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_pkey_mprotect, 7, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_shmat, 10, 0),
    ALLOW,
    /* mmap: prot & (W|X) == W|X */
    LOAD(ARG_LO(2)),
    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 0, 1),
    DENY,
    ALLOW,
    /* mprotect, pkey_mprotect: prot & X */
    LOAD(ARG_LO(2)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
    DENY,
    ALLOW,
    /* shmat: flags & SHM_EXEC */
    LOAD(ARG_LO(2)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SHM_EXEC, 0, 1),
    DENY,
    ALLOW,
};

static struct sock_filter kill_memfd_filter[] = {
    LOAD(offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    ALLOW,
};

static int install(struct sock_filter *filter, unsigned short length) {
    struct sock_fprog program = {length, filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
}

static int harden(const char *mode) {
    if (strcmp(mode, "plain") == 0) return 0;
    if (strcmp(mode, "mdwe") == 0) return prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0);
    if (strcmp(mode, "seccomp-mdwe") == 0) return install(mdwe_filter, sizeof mdwe_filter / sizeof mdwe_filter[0]);
    if (strcmp(mode, "seccomp-kill-memfd") == 0)
        return install(kill_memfd_filter, sizeof kill_memfd_filter / sizeof kill_memfd_filter[0]);
    errno = EINVAL;
    return -1;
}

int main(void) {
    char line[256];
    if (fgets(line, sizeof line, stdin) == NULL) return 1;
    line[strcspn(line, "\n")] = '\0';
    if (harden(line) != 0) {
        printf("harden %s: %s\n", line, strerror(errno));
        return 1;
    }
    void *wx = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("ready %s %s\n", line, wx == MAP_FAILED ? strerrorname_np(errno) : "wx-allowed");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        printf("%s %s\n", reply(), line);
        fflush(stdout);
    }
    return 0;
}
