/* Installs the seccomp state argv[1] names, prints what the tests need, then
 * echoes every input line as "echo <line>" with raw read/write (allowed even
 * in strict mode).  Modes:
 *   none               no seccomp
 *   errno-memfd        memfd_create fails with EPERM
 *   kill-memfd         memfd_create kills the process
 *   deny-ptrace        everything allowed but ptrace (EPERM)
 *   mdwe               systemd's MemoryDenyWriteExecute= as a filter
 *   stacked            four filters: TRACE, ERRNO(EPERM), ERRNO(EACCES) for memfd_create, LOG all
 *   arith              every instruction seccomp accepts; memfd_create gets a computed errno
 *   ip                 getpid fails with EACCES, but only from the program's own syscall gadget
 *   thread             only a second thread has a filter (memfd_create: EPERM)
 *   strict             seccomp strict mode, entered after "ready"
 * Printed before "ready": "memfd_create errno N" (stacked, arith: what the kernel did),
 * "mmap-wx errno N", "mmap-rx errno N", "mprotect-x errno N" (mdwe: likewise),
 * "gadget 0xADDR" and "getpid errno N" (ip), "thread TID" (thread). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LOAD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define NR offsetof(struct seccomp_data, nr)
#define ARG_LO(n) (offsetof(struct seccomp_data, args) + 8 * (n))
#define RET(value) BPF_STMT(BPF_RET | BPF_K, (value))
#define ALLOW RET(SECCOMP_RET_ALLOW)
#define COUNT(array) (unsigned short)(sizeof(array) / sizeof((array)[0]))

/* A syscall instruction of our own, at a known address. */
extern long gadget_getpid(void);
extern char gadget_syscall[];
__asm__(".text\n.globl gadget_getpid\ngadget_getpid:\n mov $39, %eax\n"
        ".globl gadget_syscall\ngadget_syscall:\n syscall\n ret\n");

static int install(struct sock_filter *filter, unsigned short length) {
    struct sock_fprog program = {length, filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
}

/* nr == number → result, anything else allowed. */
static int install_one(int number, unsigned int result) {
    struct sock_filter filter[] = {
        LOAD(NR), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, number, 0, 1), RET(result), ALLOW,
    };
    return install(filter, COUNT(filter));
}

static int install_mdwe(void) {
    struct sock_filter filter[] = {
        LOAD(offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        ALLOW,
        LOAD(NR),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 4, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 8, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_pkey_mprotect, 7, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_shmat, 10, 0),
        ALLOW,
        LOAD(ARG_LO(2)), /* mmap: prot & (W|X) == W|X */
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 0, 1),
        RET(SECCOMP_RET_ERRNO | EPERM),
        ALLOW,
        LOAD(ARG_LO(2)), /* mprotect, pkey_mprotect: prot & X */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
        RET(SECCOMP_RET_ERRNO | EPERM),
        ALLOW,
        LOAD(ARG_LO(2)), /* shmat: flags & SHM_EXEC */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, SHM_EXEC, 0, 1),
        RET(SECCOMP_RET_ERRNO | EPERM),
        ALLOW,
    };
    return install(filter, COUNT(filter));
}

static int install_stacked(void) {
    struct sock_filter log_all[] = {RET(SECCOMP_RET_LOG)};
    if (install_one(__NR_memfd_create, SECCOMP_RET_TRACE) != 0) return -1;
    if (install_one(__NR_memfd_create, SECCOMP_RET_ERRNO | EPERM) != 0) return -1;
    if (install_one(__NR_memfd_create, SECCOMP_RET_ERRNO | EACCES) != 0) return -1;
    return install(log_all, COUNT(log_all));
}

/* Every instruction seccomp accepts; a wrong step ends in KILL_PROCESS, memfd_create gets ERRNO(37). */
static int install_arith(void) {
    struct sock_filter filter[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),        /* A = 64 */
        /* 1 */ BPF_STMT(BPF_ST, 1),                         /* M[1] = 64 */
        /* 2 */ BPF_STMT(BPF_LDX | BPF_W | BPF_LEN, 0),       /* X = 64 */
        /* 3 */ LOAD(NR),
        /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 1, 0),
        /* 5 */ ALLOW,
        /* 6 */ BPF_STMT(BPF_ALU | BPF_SUB | BPF_X, 0),       /* A = 319 - 64 = 255 */
        /* 7 */ BPF_STMT(BPF_ST, 0),                         /* M[0] = 255 */
        /* 8 */ BPF_STMT(BPF_LDX | BPF_IMM, 3),               /* X = 3 */
        /* 9 */ BPF_STMT(BPF_ALU | BPF_DIV | BPF_X, 0),       /* A = 85 */
        /* 10 */ BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 3),      /* A = 255 */
        /* 11 */ BPF_STMT(BPF_ALU | BPF_ADD | BPF_K, 1),      /* A = 256 */
        /* 12 */ BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 3),      /* A = 32 */
        /* 13 */ BPF_STMT(BPF_ALU | BPF_LSH | BPF_X, 0),      /* A = 256 */
        /* 14 */ BPF_STMT(BPF_ALU | BPF_OR | BPF_K, 0x2b),    /* A = 0x12b */
        /* 15 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xff),   /* A = 43 */
        /* 16 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),      /* A = 40 */
        /* 17 */ BPF_STMT(BPF_ALU | BPF_NEG, 0),              /* A = -40 */
        /* 18 */ BPF_STMT(BPF_ALU | BPF_ADD | BPF_X, 0),      /* A = -37 */
        /* 19 */ BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 0x80000000, 1, 0), /* unsigned: taken */
        /* 20 */ RET(SECCOMP_RET_KILL_PROCESS),
        /* 21 */ BPF_STMT(BPF_ALU | BPF_NEG, 0),              /* A = 37 */
        /* 22 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),             /* X = 37 */
        /* 23 */ BPF_STMT(BPF_STX, 2),                        /* M[2] = 37 */
        /* 24 */ BPF_STMT(BPF_LD | BPF_MEM, 0),               /* A = 255 */
        /* 25 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_X, 0, 0, 3),
        /* 26 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_X, 0, 0, 2),
        /* 27 */ BPF_JUMP(BPF_JMP | BPF_JGT | BPF_X, 0, 0, 1),
        /* 28 */ BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0),
        /* 29 */ RET(SECCOMP_RET_KILL_PROCESS),
        /* 30 */ BPF_STMT(BPF_LDX | BPF_MEM, 1),              /* X = 64 */
        /* 31 */ BPF_STMT(BPF_LD | BPF_IMM, 64),              /* A = 64 */
        /* 32 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_X, 0, 1, 0),
        /* 33 */ RET(SECCOMP_RET_KILL_PROCESS),
        /* 34 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 65, 0, 1),
        /* 35 */ RET(SECCOMP_RET_KILL_PROCESS),
        /* 36 */ BPF_STMT(BPF_LDX | BPF_MEM, 2),              /* X = 37 */
        /* 37 */ BPF_STMT(BPF_MISC | BPF_TXA, 0),             /* A = 37 */
        /* 38 */ BPF_STMT(BPF_ALU | BPF_OR | BPF_K, SECCOMP_RET_ERRNO),
        /* 39 */ BPF_STMT(BPF_RET | BPF_A, 0),
    };
    return install(filter, COUNT(filter));
}

static int install_ip(void) {
    uint64_t after = (uint64_t)(uintptr_t)gadget_syscall + 2; /* what the kernel reports */
    struct sock_filter filter[] = {
        LOAD(NR),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getpid, 0, 5),
        LOAD(offsetof(struct seccomp_data, instruction_pointer)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)after, 0, 3),
        LOAD(offsetof(struct seccomp_data, instruction_pointer) + 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(after >> 32), 0, 1),
        RET(SECCOMP_RET_ERRNO | EACCES),
        ALLOW,
    };
    return install(filter, COUNT(filter));
}

static int thread_pipe[2];

static void *filtered_thread(void *arg) {
    char byte;
    (void)arg;
    install_one(__NR_memfd_create, SECCOMP_RET_ERRNO | EPERM);
    printf("thread %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    while (read(thread_pipe[0], &byte, 1) != 0) {
    }
    return NULL;
}

static void report_memfd(void) {
    long fd = syscall(__NR_memfd_create, "probe", 0);
    printf("memfd_create errno %d\n", fd < 0 ? errno : 0);
}

/* What the kernel does under the filter: W+X mmap, R+X mmap, mprotect gaining X (0: allowed). */
static void report_mdwe(void) {
    void *wx = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap-wx errno %d\n", wx == MAP_FAILED ? errno : 0);
    void *rx = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap-rx errno %d\n", rx == MAP_FAILED ? errno : 0);
    void *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mprotect-x errno %d\n", mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0 ? errno : 0);
}

static int harden(const char *mode) {
    if (strcmp(mode, "none") == 0 || strcmp(mode, "strict") == 0) return 0;
    if (strcmp(mode, "errno-memfd") == 0) return install_one(__NR_memfd_create, SECCOMP_RET_ERRNO | EPERM);
    if (strcmp(mode, "kill-memfd") == 0) return install_one(__NR_memfd_create, SECCOMP_RET_KILL_PROCESS);
    if (strcmp(mode, "deny-ptrace") == 0) return install_one(__NR_ptrace, SECCOMP_RET_ERRNO | EPERM);
    if (strcmp(mode, "mdwe") == 0) {
        if (install_mdwe() != 0) return -1;
        report_mdwe();
        return 0;
    }
    if (strcmp(mode, "stacked") == 0) {
        if (install_stacked() != 0) return -1;
        report_memfd();
        return 0;
    }
    if (strcmp(mode, "arith") == 0) {
        if (install_arith() != 0) return -1;
        report_memfd();
        return 0;
    }
    if (strcmp(mode, "ip") == 0) {
        if (install_ip() != 0) return -1;
        long got = gadget_getpid();
        printf("gadget %p\ngetpid errno %ld\n", (void *)gadget_syscall, got < 0 ? -got : 0);
        return 0;
    }
    if (strcmp(mode, "thread") == 0) {
        pthread_t thread;
        if (pipe(thread_pipe) != 0) return -1;
        return pthread_create(&thread, NULL, filtered_thread, NULL) == 0 ? 0 : -1;
    }
    errno = EINVAL;
    return -1;
}

int main(int argc, char **argv) {
    char line[256] = "echo ";
    if (argc != 2 || harden(argv[1]) != 0) {
        printf("cannot install %s: %s\n", argc == 2 ? argv[1] : "?", strerror(errno));
        return 1;
    }
    if (strcmp(argv[1], "thread") == 0) usleep(100 * 1000); /* its line first */
    printf("ready\n");
    fflush(stdout);
    if (strcmp(argv[1], "strict") == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) return 1;
    for (;;) {
        ssize_t got = read(0, line + 5, sizeof line - 5);
        if (got <= 0) break;
        if (write(1, line, (size_t)got + 5) < 0) break;
    }
    syscall(strcmp(argv[1], "strict") == 0 ? SYS_exit : SYS_exit_group, 0); /* strict mode has no exit_group */
    return 0;
}
