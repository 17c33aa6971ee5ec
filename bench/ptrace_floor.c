// The "ptrace floor": the stop any ptrace patcher pays, measured on a live
// process, as the reference bench/apply_pause.py sets buildhook's pause against.
//
//   ptrace_floor PID CYCLES ADDR...
//
// Each ADDR (hex, 0x...) is a code address in PID where a patcher would write
// a jump (8 bytes).  Each cycle seizes every thread of PID (not timed), then
// times, from just before the first PTRACE_INTERRUPT to just after the last
// PTRACE_DETACH, what the kernel makes a minimal patcher do:
//
//   1. PTRACE_INTERRUPT every thread;
//   2. waitpid each until it reports its stop;
//   3. PTRACE_GETREGS each (the patcher must know where every thread is);
//   4. one process_vm_readv of every thread's live stack, from (rsp - 128) & ~7
//      (the red zone included) to the end of the mapping holding rsp (the
//      patcher must know which functions are active);
//   5. pwrite 8 bytes at each ADDR through /proc/PID/mem;
//   6. PTRACE_DETACH each.
//
// The bytes written are the bytes read at each ADDR before the first cycle, so
// the target is never changed (run it only while nothing else patches PID).
// Cycles are ~20 ms apart.  Output: one line of JSON on stdout,
// {"threads": N, "pauses_us": [...]}, N the threads stopped in the last cycle.
// Errors: one line on stderr, exit 1; every thread seized is detached first.
// (Were this program killed mid-cycle, the kernel detaches its tracees too.)
//
// Kept minimal on purpose: no clone tracing (a thread created during a cycle
// is not stopped: the benchmark's target is idle then), x86-64 only.
//
// Build: gcc -O2 -Wall -Wextra -o ptrace_floor ptrace_floor.c

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JUMP_SIZE 8
#define RED_ZONE 128
#define CYCLE_GAP_NS 20000000L          // 20 ms between cycles
#define STACK_RESERVE (64 * 1024)       // stack buffer per thread, pre-faulted before timing
#define MAX_IOV 1024                    // UIO_MAXIOV: process_vm_readv's limit per call

// Where a seized thread is; release() uses it to bring any thread back to running.
enum thread_state { SEIZED, INTERRUPTED, STOPPED, GONE, DETACHED };

struct thread {
    pid_t tid;
    enum thread_state state;
    int signal;                         // a signal-delivery stop's signal, delivered at detach
    struct user_regs_struct regs;
};

struct mapping {
    uint64_t start, end;
};

static pid_t target;
static int mem_fd = -1;
static uint64_t *addrs;                 // the ADDRs, and the 8 bytes found at each
static unsigned char (*saved)[JUMP_SIZE];
static int n_addrs;
static struct thread *threads;
static int n_threads;
static struct mapping *maps;
static int n_maps;
static unsigned char *stack_buf;
static size_t stack_cap;

static void release(void);

// One line on stderr, every seized thread detached, exit 1.
static void die(const char *format, ...)
{
    va_list ap;
    int saved_errno = errno;

    release();
    fprintf(stderr, "ptrace_floor: ");
    va_start(ap, format);
    errno = saved_errno;
    vfprintf(stderr, format, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *grow(void *old, size_t count, size_t size)
{
    void *p = realloc(old, count * size);
    if (!p && count)
        die("out of memory");
    return p;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Wait for a thread's next report: its stop (remembering a signal-delivery
// stop's signal), or its exit.  Used by the timed path and by release();
// returns -1 (errno set) if waitpid fails.
static int wait_stop(struct thread *t)
{
    int st;

    while (waitpid(t->tid, &st, __WALL) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
        t->state = GONE;
        return 0;
    }
    // PTRACE_EVENT_STOP is the interrupt's stop (or a group stop): nothing to
    // deliver.  Anything else under PTRACE_SEIZE with no options set is a
    // signal-delivery stop: the thread keeps that signal at detach.
    if ((st >> 16) != PTRACE_EVENT_STOP)
        t->signal = WSTOPSIG(st);
    t->state = STOPPED;
    return 0;
}

// Bring every seized thread back to running, untraced, whatever step it was
// at: interrupt it if need be, wait for its stop, detach with its signal.
static void release(void)
{
    for (int i = 0; i < n_threads; i++) {
        struct thread *t = &threads[i];

        if (t->state == SEIZED) {
            if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0) {
                t->state = GONE;        // ESRCH: it exited
                continue;
            }
            t->state = INTERRUPTED;
        }
        if (t->state == INTERRUPTED && wait_stop(t) < 0)
            t->state = GONE;            // ECHILD: exited and reaped; nothing to detach
        if (t->state == STOPPED) {
            ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)t->signal);
            t->state = DETACHED;
        }
    }
}

// /proc/PID/task: the threads of this cycle.
static void list_threads(void)
{
    char path[64];
    DIR *dir;
    struct dirent *entry;

    snprintf(path, sizeof path, "/proc/%d/task", target);
    dir = opendir(path);
    if (!dir)
        die("%s: %m", path);
    n_threads = 0;
    while ((entry = readdir(dir))) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
            continue;
        threads = grow(threads, n_threads + 1, sizeof *threads);
        threads[n_threads++] = (struct thread){.tid = atoi(entry->d_name), .state = DETACHED};
    }
    closedir(dir);
    if (n_threads == 0)
        die("%s lists no threads", path);
    if (n_threads > MAX_IOV)
        die("%d threads: more than one process_vm_readv reads (%d)", n_threads, MAX_IOV);
}

// /proc/PID/maps, in address order: where each thread's stack mapping ends.
static void read_maps(void)
{
    char path[64], *line = NULL;
    size_t len = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/maps", target);
    f = fopen(path, "r");
    if (!f)
        die("%s: %m", path);
    n_maps = 0;
    while (getline(&line, &len, f) > 0) {
        uint64_t start, end;
        if (sscanf(line, "%" SCNx64 "-%" SCNx64, &start, &end) != 2)
            continue;
        maps = grow(maps, n_maps + 1, sizeof *maps);
        maps[n_maps++] = (struct mapping){start, end};
    }
    free(line);
    fclose(f);
}

// The mapping holding addr (binary search: maps are sorted), or NULL.
static const struct mapping *mapping_of(uint64_t addr)
{
    int lo = 0, hi = n_maps - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (addr < maps[mid].start)
            hi = mid - 1;
        else if (addr >= maps[mid].end)
            lo = mid + 1;
        else
            return &maps[mid];
    }
    return NULL;
}

// A buffer for the stacks, pre-faulted so the timed read does not pay for
// this program's page faults.  (Grown inside a cycle only if a stack is deeper
// than expected; it keeps that size for later cycles.)
static void reserve_stack_buf(size_t size)
{
    if (size <= stack_cap)
        return;
    stack_buf = grow(stack_buf, size, 1);
    memset(stack_buf, 0, size);
    stack_cap = size;
}

// The timed part of one cycle, on seized threads; returns the pause in ns.
static int64_t stop_the_world(void)
{
    struct iovec local[MAX_IOV], remote[MAX_IOV];
    size_t total = 0;
    int64_t t0, t1;
    ssize_t got;

    t0 = now_ns();
    for (int i = 0; i < n_threads; i++) {
        if (ptrace(PTRACE_INTERRUPT, threads[i].tid, 0, 0) < 0)
            die("PTRACE_INTERRUPT %d: %m", threads[i].tid);
        threads[i].state = INTERRUPTED;
    }
    for (int i = 0; i < n_threads; i++) {
        if (wait_stop(&threads[i]) < 0)
            die("waitpid %d: %m", threads[i].tid);
        if (threads[i].state != STOPPED)
            die("thread %d exited during the stop", threads[i].tid);
    }
    for (int i = 0; i < n_threads; i++)
        if (ptrace(PTRACE_GETREGS, threads[i].tid, 0, &threads[i].regs) < 0)
            die("PTRACE_GETREGS %d: %m", threads[i].tid);

    // The live part of every stack, in one read.
    for (int i = 0; i < n_threads; i++) {
        uint64_t rsp = threads[i].regs.rsp, from = (rsp - RED_ZONE) & ~(uint64_t)7;
        const struct mapping *m = mapping_of(rsp);

        if (!m)
            die("thread %d: rsp %#" PRIx64 " is in no mapping of /proc/%d/maps", threads[i].tid, rsp, target);
        if (from < m->start)
            from = m->start;
        remote[i] = (struct iovec){(void *)from, m->end - from};
        total += m->end - from;
    }
    if (total > stack_cap)
        reserve_stack_buf(total);
    for (size_t i = 0, at = 0; i < (size_t)n_threads; at += remote[i].iov_len, i++)
        local[i] = (struct iovec){stack_buf + at, remote[i].iov_len};
    got = process_vm_readv(target, local, n_threads, remote, n_threads, 0);
    if (got < 0 || (size_t)got != total)
        die("process_vm_readv of %zu bytes of stack: %s", total, got < 0 ? strerror(errno) : "short read");

    // The jumps (the bytes already there: nothing changes).
    for (int i = 0; i < n_addrs; i++)
        if (pwrite(mem_fd, saved[i], JUMP_SIZE, (off_t)addrs[i]) != JUMP_SIZE)
            die("writing /proc/%d/mem at %#" PRIx64 ": %m", target, addrs[i]);

    for (int i = 0; i < n_threads; i++) {
        if (ptrace(PTRACE_DETACH, threads[i].tid, 0, (void *)(long)threads[i].signal) < 0)
            die("PTRACE_DETACH %d: %m", threads[i].tid);
        threads[i].state = DETACHED;
    }
    t1 = now_ns();
    return t1 - t0;
}

// Parse a whole number in base, or die naming what it was.
static uint64_t parse(const char *text, int base, const char *what)
{
    char *end;
    uint64_t value;

    errno = 0;
    value = strtoull(text, &end, base);
    if (errno || end == text || *end)
        die("%s: not a number: %s", what, text);
    return value;
}

int main(int argc, char **argv)
{
    char path[64];
    long cycles;
    int64_t *pauses;
    const struct timespec gap = {0, CYCLE_GAP_NS};

    if (argc < 4) {
        fprintf(stderr, "usage: ptrace_floor PID CYCLES ADDR...\n");
        return 1;
    }
    target = (pid_t)parse(argv[1], 10, "PID");
    cycles = (long)parse(argv[2], 10, "CYCLES");
    if (target <= 0 || cycles <= 0)
        die("PID and CYCLES must be positive");
    n_addrs = argc - 3;
    addrs = grow(NULL, n_addrs, sizeof *addrs);
    saved = grow(NULL, n_addrs, sizeof *saved);
    pauses = grow(NULL, cycles, sizeof *pauses);

    // Before timing: the bytes at each ADDR, which the pauses write back.
    snprintf(path, sizeof path, "/proc/%d/mem", target);
    mem_fd = open(path, O_RDWR | O_CLOEXEC);
    if (mem_fd < 0)
        die("%s: %m", path);
    for (int i = 0; i < n_addrs; i++) {
        if (strncmp(argv[3 + i], "0x", 2) != 0)
            die("ADDR %s: expected hex, 0x...", argv[3 + i]);
        addrs[i] = parse(argv[3 + i], 16, "ADDR");
        if (pread(mem_fd, saved[i], JUMP_SIZE, (off_t)addrs[i]) != JUMP_SIZE)
            die("reading %s at %#" PRIx64 ": %m", path, addrs[i]);
    }

    for (long c = 0; c < cycles; c++) {
        if (c > 0)
            nanosleep(&gap, NULL);
        list_threads();
        read_maps();
        reserve_stack_buf((size_t)n_threads * STACK_RESERVE);
        for (int i = 0; i < n_threads; i++) {
            if (ptrace(PTRACE_SEIZE, threads[i].tid, 0, 0) == 0)
                threads[i].state = SEIZED;
            else if (errno == ESRCH)
                threads[i].state = GONE;        // exited since the listing
            else
                die("PTRACE_SEIZE %d: %m", threads[i].tid);
        }
        // Threads that exited since the listing are dropped from this cycle.
        int kept = 0;
        for (int i = 0; i < n_threads; i++)
            if (threads[i].state != GONE)
                threads[kept++] = threads[i];
        n_threads = kept;
        pauses[c] = stop_the_world();
    }

    printf("{\"threads\": %d, \"pauses_us\": [", n_threads);
    for (long c = 0; c < cycles; c++)
        printf("%s%.1f", c ? ", " : "", pauses[c] / 1000.0);
    printf("]}\n");
    return 0;
}
