/* The stop-the-world pause of an apply or revert, as one native call (docs/apply.md, "The pause").
 *
 * Python prepares everything before the pause: which threads are seized, the busy ranges, the
 * signal restorers, the map of the process, the bytes to write and, per thread, a probe (its
 * registers and live stack as they were when the thread was last checked precisely and found
 * clean).  This call then does only what the kernel makes any ptrace patcher do, plus a scan:
 *
 *   interrupt every running thread (Python holds real-time priority from before the first interrupt
 *   when the machine has no CPU to spare; else it is taken here once all have stopped, unless nothing
 *   else runs at all: scheduling.py);
 *   wait for each (SIGCHLD or short sleeps, within a budget);
 *   read the task list once more (a thread started meanwhile: HELD, Python seizes it) from the folder
 *   Python opened; read every thread's registers, locate its live stack in the map, read all the
 *   stacks in one process_vm_readv, into the buffer Python touched (no page fault in the pause);
 *   a thread whose unwinding inputs and stack bytes equal its probe's is clean without a look; any other is clean when its PC and no word of its stack lies in a
 *   busy range and no word is a signal restorer (a signal frame: Python looks below it);
 *   if every thread is clean and a commit was asked: the writes, in order, through
 *   /proc/PID/mem, and every thread detached (its held signal delivered).
 *
 * Anything else (a busy or unclear thread, a new thread, no commit asked) returns HELD with the
 * world still stopped and every verdict filled in: Python decides with its precise unwinder,
 * exactly as without this library, and commits through bh_commit (the writes and the detaches,
 * at C speed: on a loaded machine every Python step in the pause may wait for a CPU).  A thread that will not stop returns LATE (the others still
 * stopped).  The state of every thread is reported back, so that Python's ThreadGroup stays the
 * one account of what is stopped, what signal each holds and which interrupts are pending.
 *
 * Nothing here outlives the call: no handler, no thread; SIGCHLD is blocked only during the
 * wait and only when Python says nobody else takes it.  Killed at any point, the kernel detaches
 * every thread (they run on), and a write is either done or not: the commit is one byte.
 *
 * No Python API: loaded with ctypes, so the same file serves any python3 (the zipapp carries it).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BH_ABI 5  /* bump with any change to the structures below: native.py checks it */

enum { BH_RUNNING = 0, BH_STOPPED = 1, BH_GONE = 2 };
enum {
    BH_UNCHECKED = 0,      /* not looked at (not stopped, or the call ended before) */
    BH_CLEAN = 1,          /* no PC, no stack word in a busy range, no signal frame */
    BH_PROBED = 2,         /* clean: registers and stack exactly as its probe, which was clean */
    BH_BUSY_PC = 3,        /* its PC is in busy range `range` */
    BH_STACK_HIT = 4,      /* a stack word (at `hit_address`) in busy range `range`: unwind precisely */
    BH_SIGNAL_FRAME = 5,   /* a stack word is a signal restorer: look below the frame */
    BH_UNMAPPED = 6,       /* its stack pointer is in no mapping Python gave */
    BH_UNREADABLE = 7,     /* its live stack could not be read whole */
};
enum { BH_COMMITTED = 0, BH_HELD = 1, BH_LATE = 2, BH_ERROR = 3 };
/* When each phase of a call ended (CLOCK_MONOTONIC ns, 0: not reached), for apply --json's breakdown. */
enum { BH_MARK_INTERRUPTED = 0, BH_MARK_STOPPED = 1, BH_MARK_CHECKED = 2, BH_MARK_WRITTEN = 3, BH_MARKS = 4 };

#define NREGS 27
#define RED_ZONE 128
#define MAX_IOV 1024
#define MAX_SLEEP_NS 1000000L
#define FIRST_SLEEP_NS 100000L
#define SPIN_NS 1000000L
#define MAX_DIRENT 280  /* a linux_dirent64 with a 255-byte name, aligned */

/* user_regs_struct indexes (kernel order, as ptrace.REGISTER_NAMES) */
enum { R15 = 0, R14 = 1, R13 = 2, R12 = 3, RBP = 4, RBX = 5, RIP = 16, RSP = 19 };
static const int UNWIND_INPUTS[] = {RIP, RSP, RBP, RBX, R12, R13, R14, R15};

struct bh_thread {
    int32_t tid;
    int32_t state;          /* in: BH_RUNNING or BH_STOPPED (held already); out: as it is now */
    int32_t signo;          /* in/out: the signal it gets when it goes on (a signal-delivery stop) */
    int32_t interrupted;    /* in/out: an interrupt of ours whose stop has not been consumed */
    int32_t verdict;        /* out */
    int32_t range;          /* out: index of the busy range (BH_BUSY_PC, BH_STACK_HIT) */
    uint64_t hit_address;   /* out: where the word is (BH_STACK_HIT, BH_SIGNAL_FRAME) */
    uint64_t regs[NREGS];   /* out */
    uint64_t stack_start;   /* out: the live part of its stack, located in the map */
    uint64_t stack_size;
    const uint8_t *probe;   /* in: NULL, or stack bytes of the probe (probe_start, probe_size) */
    uint64_t probe_start;
    uint64_t probe_size;
    uint64_t probe_regs[NREGS];
    uint64_t probe_skip_start;  /* in: bytes not compared with the probe (its rseq area), or size 0 */
    uint64_t probe_skip_size;
};

struct bh_pause {
    int32_t abi;            /* BH_ABI: a mismatched library is not used */
    int32_t pid;            /* the process (its task list) */
    int32_t memory_pid;     /* the thread whose memory process_vm_readv reads */
    int32_t mem_fd;         /* /proc/PID/mem, open for writing */
    int32_t nthreads;
    int32_t nknown;         /* thread ids known not to need a stop (zombies): not "new" */
    int32_t nranges;        /* busy [start, end) pairs, sorted, disjoint */
    int32_t nrestorers;
    int32_t nmaps;          /* mappings [start, end) pairs, sorted */
    int32_t nwrites;        /* -1: no commit asked (stop and check only) */
    int32_t use_sigchld;    /* 1: SIGCHLD is nobody else's: block it and sleep on it */
    int32_t result;         /* out */
    int32_t new_threads;    /* out: the task list holds a thread not given */
    int32_t error;          /* out: errno of what failed (BH_ERROR) */
    int32_t failed_write;   /* out: index of the write that failed, or -1 */
    int32_t late;           /* out: threads that did not stop (BH_LATE) */
    int32_t task_fd;        /* /proc/PID/task opened by the caller (O_DIRECTORY), or -1 */
    int32_t precedence;     /* 1: real-time priority once every thread has stopped (0: nothing else runs) */
    int64_t budget_ns;      /* how long the stop may wait for a thread */
    int64_t started_ns;     /* out: CLOCK_MONOTONIC before the first interrupt of this call */
    int64_t ended_ns;       /* out: after the last detach (BH_COMMITTED) or the checks */
    int64_t marks[BH_MARKS];  /* out: the end of each phase reached */
    uint8_t *stack_buffer;  /* where the stacks are read: the caller's, touched before the call (no page
                             * fault in the pause), or NULL; a bigger read takes its own */
    uint64_t stack_buffer_size;
    struct bh_thread *threads;
    const int32_t *known;
    const uint64_t *ranges;
    const uint64_t *restorers;
    const uint64_t *maps;
    const uint64_t *write_address;
    const uint64_t *write_size;
    const uint8_t *write_data;  /* the writes' bytes, one after the other */
};

int bh_abi(void) { return BH_ABI; }

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Index of the [start, end) pair of the sorted array *pairs* that holds *address*, or -1. */
static int find_pair(const uint64_t *pairs, int count, uint64_t address)
{
    int low = 0, high = count - 1;
    while (low <= high) {
        int middle = (low + high) / 2;
        if (address < pairs[2 * middle])
            high = middle - 1;
        else if (address >= pairs[2 * middle + 1])
            low = middle + 1;
        else
            return middle;
    }
    return -1;
}

/* One look at a thread without waiting (Python's ThreadGroup._poll): 1 if it has stopped or gone. */
static int poll_thread(struct bh_thread *t)
{
    for (;;) {
        int status;
        pid_t got = waitpid(t->tid, &status, WNOHANG | __WALL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            t->state = BH_GONE;  /* ECHILD: not ours any more, it has ended */
            t->interrupted = 0;
            return 1;
        }
        if (got == 0)
            return 0;
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            t->state = BH_GONE;
            t->interrupted = 0;
            return 1;
        }
        if (!WIFSTOPPED(status))
            continue;
        int event = status >> 16;
        int signo = WSTOPSIG(status);
        if (event == PTRACE_EVENT_STOP) {  /* the interrupt stop: by far the most common */
            t->interrupted = 0;
        } else if (event == 0 && signo == (SIGTRAP | 0x80)) {
            ptrace(PTRACE_CONT, t->tid, 0, 0);  /* a syscall stop cannot come; never leave one */
            continue;
        } else if (event == 0) {
            t->signo = signo;  /* a signal-delivery stop: the interrupt's stop is still to come */
        } else {
            t->interrupted = 0;  /* another event stop: the interrupt is consumed with it */
        }
        t->state = BH_STOPPED;
        return 1;
    }
}

/* Wait until every interrupted thread has stopped or gone, or the deadline: the number still running. */
static int wait_stopped(struct bh_pause *p, int64_t deadline)
{
    int waiting = 0;
    for (int i = 0; i < p->nthreads; i++)
        if (p->threads[i].state == BH_RUNNING && !poll_thread(&p->threads[i]))
            waiting++;
    if (waiting == 0)
        return 0;
    sigset_t chld, before;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int blocked = 0;
    if (p->use_sigchld && pthread_sigmask(SIG_BLOCK, &chld, &before) == 0)
        blocked = !sigismember(&before, SIGCHLD);
    /* Yielding spins only at normal priority: at real-time priority it would keep the CPU from
     * the very threads that must run to stop. */
    int64_t spin_until = sched_getscheduler(0) == SCHED_OTHER ? now_ns() + SPIN_NS : 0;
    long sleep_ns = FIRST_SLEEP_NS;
    for (;;) {
        waiting = 0;
        for (int i = 0; i < p->nthreads; i++)
            if (p->threads[i].state == BH_RUNNING && !poll_thread(&p->threads[i]))
                waiting++;
        int64_t now = now_ns();
        if (waiting == 0 || now >= deadline)
            break;
        int64_t most = deadline - now;
        if (blocked) {
            long wait = most < MAX_SLEEP_NS ? (long)most : MAX_SLEEP_NS;
            struct timespec ts = {0, wait};
            sigtimedwait(&chld, NULL, &ts);
        } else if (now < spin_until) {
            sched_yield();
        } else {
            long wait = most < sleep_ns ? (long)most : sleep_ns;
            struct timespec ts = {0, wait};
            nanosleep(&ts, NULL);
            sleep_ns = sleep_ns * 2 < MAX_SLEEP_NS ? sleep_ns * 2 : MAX_SLEEP_NS;
        }
    }
    if (blocked)
        pthread_sigmask(SIG_UNBLOCK, &chld, NULL);
    return waiting;
}

static int is_listed(const struct bh_pause *p, int tid)
{
    for (int i = 0; i < p->nthreads; i++)
        if (p->threads[i].tid == tid)
            return 1;
    for (int i = 0; i < p->nknown; i++)
        if (p->known[i] == tid)
            return 1;
    return 0;
}

/* Does /proc/PID/task list a thread that is neither given nor known?  Read from the caller's open
 * folder (rewound) when there is one: no allocation and no path walk in the pause. */
static int has_new_threads(const struct bh_pause *p)
{
    if (p->task_fd >= 0 && lseek(p->task_fd, 0, SEEK_SET) == 0) {
        char buffer[8192] __attribute__((aligned(8)));
        long got;
        while ((got = syscall(SYS_getdents64, p->task_fd, buffer, sizeof buffer)) > 0) {
            for (long at = 0; at < got;) {
                struct linux_dirent64 { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type;
                                        char name[]; } *entry = (void *)(buffer + at);
                if (entry->name[0] >= '0' && entry->name[0] <= '9' && !is_listed(p, atoi(entry->name)))
                    return 1;
                at += entry->reclen;
            }
            if ((long)sizeof buffer - got >= MAX_DIRENT)
                return 0;  /* the kernel fills the buffer while entries fit: this was the last of them */
        }
        if (got == 0)
            return 0;
        /* an error: the folder of a process that is gone (the waits have said so), or read it by path */
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", p->pid);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return 0;  /* the process is gone: the waits have said so */
    int found = 0;
    struct dirent *entry;
    while (!found && (entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
            continue;
        found = !is_listed(p, atoi(entry->d_name));
    }
    closedir(dir);
    return found;
}

static int same_as_probe(const struct bh_thread *t, const uint8_t *stack)
{
    if (t->probe == NULL || t->probe_start != t->stack_start || t->probe_size != t->stack_size)
        return 0;
    for (size_t i = 0; i < sizeof UNWIND_INPUTS / sizeof UNWIND_INPUTS[0]; i++)
        if (t->regs[UNWIND_INPUTS[i]] != t->probe_regs[UNWIND_INPUTS[i]])
            return 0;
    uint64_t skip = 0, skip_end = 0;  /* the part of the live stack that is the skipped area, as offsets */
    if (t->probe_skip_size && t->probe_skip_start < t->stack_start + t->stack_size &&
        t->probe_skip_start + t->probe_skip_size > t->stack_start) {
        skip = t->probe_skip_start > t->stack_start ? t->probe_skip_start - t->stack_start : 0;
        skip_end = t->probe_skip_start + t->probe_skip_size - t->stack_start;
        if (skip_end > t->stack_size)
            skip_end = t->stack_size;
    }
    if (skip_end == 0)
        return memcmp(stack, t->probe, t->stack_size) == 0;
    return memcmp(stack, t->probe, skip) == 0 &&
           memcmp(stack + skip_end, t->probe + skip_end, t->stack_size - skip_end) == 0;
}

/* The verdict of one stopped thread from its registers and its live stack (Python's conservative scan). */
static void check_thread(const struct bh_pause *p, struct bh_thread *t, const uint8_t *stack, uint64_t got)
{
    int range = find_pair(p->ranges, p->nranges, t->regs[RIP]);
    if (range >= 0) {
        t->verdict = BH_BUSY_PC;
        t->range = range;
        return;
    }
    if (t->stack_size == 0) {
        t->verdict = BH_UNMAPPED;
        return;
    }
    if (got != t->stack_size) {
        t->verdict = BH_UNREADABLE;
        return;
    }
    if (same_as_probe(t, stack)) {
        t->verdict = BH_PROBED;
        return;
    }
    uint64_t low = p->nranges ? p->ranges[0] : 0, high = p->nranges ? p->ranges[2 * p->nranges - 1] : 0;
    for (uint64_t offset = 0; offset + 8 <= t->stack_size; offset += 8) {
        uint64_t word;
        memcpy(&word, stack + offset, 8);
        if (word >= low && word < high && (range = find_pair(p->ranges, p->nranges, word)) >= 0) {
            t->verdict = BH_STACK_HIT;
            t->range = range;
            t->hit_address = t->stack_start + offset;
            return;
        }
        for (int r = 0; r < p->nrestorers; r++) {
            if (word == p->restorers[r]) {
                t->verdict = BH_SIGNAL_FRAME;
                t->hit_address = t->stack_start + offset;
                return;
            }
        }
    }
    t->verdict = BH_CLEAN;
}

/* Registers, stacks (one process_vm_readv per MAX_IOV threads) and the verdict of every stopped thread;
 * the number of threads that are not clean. */
static int check_threads(struct bh_pause *p)
{
    uint64_t total = 0;
    for (int i = 0; i < p->nthreads; i++) {
        struct bh_thread *t = &p->threads[i];
        t->verdict = BH_UNCHECKED;
        t->stack_start = t->stack_size = 0;
        if (t->state != BH_STOPPED)
            continue;
        struct user_regs_struct regs;
        if (ptrace(PTRACE_GETREGS, t->tid, 0, &regs) != 0) {
            t->verdict = BH_UNREADABLE;
            continue;
        }
        memcpy(t->regs, &regs, sizeof t->regs);
        uint64_t rsp = t->regs[RSP];
        int map = find_pair(p->maps, p->nmaps, rsp);
        if (map >= 0) {
            uint64_t start = (rsp - RED_ZONE) & ~(uint64_t)7;
            if (start < p->maps[2 * map])
                start = p->maps[2 * map];
            t->stack_start = start;
            t->stack_size = p->maps[2 * map + 1] - start;
            total += t->stack_size;
        }
    }
    int own = p->stack_buffer == NULL || total > p->stack_buffer_size;
    uint8_t *buffer = own ? malloc(total ? total : 1) : p->stack_buffer;
    if (buffer == NULL)
        return -1;
    int unclean = 0;
    int i = 0;
    uint64_t at = 0;
    while (i < p->nthreads) {
        struct iovec local[MAX_IOV], remote[MAX_IOV];
        int members[MAX_IOV];
        int count = 0, first = i;
        uint64_t batch_at = at;
        for (; i < p->nthreads && count < MAX_IOV; i++) {
            struct bh_thread *t = &p->threads[i];
            if (t->state != BH_STOPPED || t->verdict != BH_UNCHECKED || t->stack_size == 0)
                continue;
            local[count].iov_base = buffer + at;
            local[count].iov_len = t->stack_size;
            remote[count].iov_base = (void *)(uintptr_t)t->stack_start;
            remote[count].iov_len = t->stack_size;
            members[count++] = i;
            at += t->stack_size;
        }
        ssize_t read = count ? process_vm_readv(p->memory_pid, local, count, remote, count, 0) : 0;
        uint64_t remaining = read > 0 ? (uint64_t)read : 0;
        uint64_t offset = batch_at;
        for (int m = 0; m < count; m++) {
            struct bh_thread *t = &p->threads[members[m]];
            uint64_t got = remaining < t->stack_size ? remaining : t->stack_size;
            remaining -= got;
            check_thread(p, t, buffer + offset, got);
            offset += t->stack_size;
        }
        for (int k = first; k < i; k++) {
            struct bh_thread *t = &p->threads[k];
            if (t->state == BH_STOPPED && t->verdict == BH_UNCHECKED)
                check_thread(p, t, NULL, 0);  /* unmapped: no stack to read */
        }
    }
    if (own)
        free(buffer);
    for (int k = 0; k < p->nthreads; k++)
        if (p->threads[k].state == BH_STOPPED && p->threads[k].verdict != BH_CLEAN &&
            p->threads[k].verdict != BH_PROBED)
            unclean++;
    return unclean;
}

static int commit(struct bh_pause *p)
{
    const uint8_t *data = p->write_data;
    for (int w = 0; w < p->nwrites; w++) {
        ssize_t written = pwrite(p->mem_fd, data, p->write_size[w], (off_t)p->write_address[w]);
        if (written != (ssize_t)p->write_size[w]) {
            p->error = written < 0 ? errno : EIO;
            p->failed_write = w;
            return -1;
        }
        data += p->write_size[w];
    }
    p->marks[BH_MARK_WRITTEN] = now_ns();
    for (int i = 0; i < p->nthreads; i++) {
        struct bh_thread *t = &p->threads[i];
        if (t->state != BH_STOPPED)
            continue;
        ptrace(PTRACE_DETACH, t->tid, 0, (void *)(uintptr_t)t->signo);  /* ESRCH: gone, nothing to let go */
        t->state = BH_GONE;  /* not ours any more: Python forgets it */
        t->signo = 0;
        t->interrupted = 0;
    }
    return 0;
}

/* The commit alone, for a world Python held and found clean (a thread it looked at precisely):
 * the writes in order, then every stopped thread detached. */
int bh_commit(struct bh_pause *p)
{
    memset(p->marks, 0, sizeof p->marks);
    p->error = 0;
    p->failed_write = -1;
    if (p->abi != BH_ABI)
        return p->result = BH_ERROR;
    p->started_ns = now_ns();
    int failed = commit(p);
    p->ended_ns = now_ns();
    return p->result = failed ? BH_ERROR : BH_COMMITTED;
}

static int check_and_commit(struct bh_pause *p);

/* Real-time priority (SCHED_FIFO 1) from raise_precedence to lower_precedence, then the caller's policy
 * again (a slice it asked for stays: scheduling.py); a caller at real-time priority already (Python
 * holds it on a busy machine), or without the right to, runs as it is. */
struct precedence {
    int raised;
    int policy;
    struct sched_param before;
};

static void raise_precedence(struct precedence *r)
{
    struct sched_param fifo = {.sched_priority = 1};
    if (r->raised)
        return;
    r->policy = sched_getscheduler(0);
    if (r->policy == SCHED_FIFO || r->policy == SCHED_RR)
        return;
    r->raised = r->policy >= 0 && sched_getparam(0, &r->before) == 0 && sched_setscheduler(0, SCHED_FIFO, &fifo) == 0;
}

static void lower_precedence(struct precedence *r)
{
    if (r->raised)
        sched_setscheduler(0, r->policy, &r->before);
    r->raised = 0;
}

static int stop_check_and_commit(struct bh_pause *p, struct precedence *precedence);

int bh_pause(struct bh_pause *p)
{
    p->result = BH_ERROR;
    p->new_threads = 0;
    p->error = 0;
    p->failed_write = -1;
    p->late = 0;
    memset(p->marks, 0, sizeof p->marks);
    if (p->abi != BH_ABI)
        return p->result = BH_ERROR;
    struct precedence precedence = {0};
    int result = stop_check_and_commit(p, &precedence);
    lower_precedence(&precedence);
    return result;
}

static int stop_check_and_commit(struct bh_pause *p, struct precedence *precedence)
{
    p->started_ns = now_ns();
    for (int i = 0; i < p->nthreads; i++) {
        struct bh_thread *t = &p->threads[i];
        if (t->state != BH_RUNNING || t->interrupted)
            continue;
        if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) != 0) {
            if (errno != ESRCH) {
                p->error = errno;
                p->ended_ns = now_ns();
                return p->result = BH_ERROR;
            }
            continue;  /* gone, or exited: the wait says which */
        }
        t->interrupted = 1;
    }
    p->marks[BH_MARK_INTERRUPTED] = now_ns();
    p->late = wait_stopped(p, p->started_ns + p->budget_ns);
    if (p->late) {
        p->ended_ns = now_ns();
        return p->result = BH_LATE;
    }
    p->marks[BH_MARK_STOPPED] = now_ns();
    /* Every thread stopped: the rest waits for no one, so nothing else may take the CPU from it
     * (scheduling.precedence says why not before, on a machine with a CPU to spare). */
    if (p->precedence)
        raise_precedence(precedence);
    return check_and_commit(p);
}

/* The stopped world: the task list again, every thread's check, and the commit when all are clean. */
static int check_and_commit(struct bh_pause *p)
{
    p->new_threads = has_new_threads(p);
    int unclean = check_threads(p);
    p->marks[BH_MARK_CHECKED] = now_ns();
    if (unclean < 0) {
        p->error = ENOMEM;
        p->ended_ns = now_ns();
        return p->result = BH_ERROR;
    }
    if (unclean || p->new_threads || p->nwrites < 0) {
        p->ended_ns = p->marks[BH_MARK_CHECKED];  /* nothing after the checks: no phase of its own */
        return p->result = BH_HELD;
    }
    if (commit(p) != 0) {
        p->ended_ns = now_ns();
        return p->result = BH_ERROR;
    }
    p->ended_ns = now_ns();
    return p->result = BH_COMMITTED;
}
