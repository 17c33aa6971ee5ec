/* killsafe: a multi-threaded target for killing the applier at every step.
 * part_f, part_g and part_h change together between releases; "which" prints
 * all three, so a half-redirected process shows as mixed values.  Threads
 * block in read (a pipe nobody writes), nanosleep and a condition wait, and
 * one spins; any EINTR is printed.  part_f answers its version only when
 * backtrace() unwinds out of it: the unwinder (libgcc_s, which glibc loads
 * for the first backtrace, before "ready") finds the patch's unwind tables,
 * and no table of a region that is gone is still registered.
 * Built with -DPART_H_IN_LIBRARY, part_h is left out, and -DLIBRARY gives
 * an object with part_h alone, for a shared library: a patch set. */
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VERSION_F 3
#define VERSION_G 3
#define VERSION_H 1

int part_h(void);
#ifndef PART_H_IN_LIBRARY
__attribute__((noipa)) int part_h(void) { return VERSION_H; }
#endif
#ifndef LIBRARY

__attribute__((noipa)) int part_f(void) {
    void *frames[8];
    return backtrace(frames, 8) >= 3 ? VERSION_F : 0;
}
int table[2];  /* grows in "migrating", carried by a transform */
__attribute__((noipa)) int part_g(void) { return VERSION_G + table[0] - table[1]; }

static int pipe_fds[2];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static volatile unsigned long spins;

static void report(const char *call) {
    printf("EINTR %s\n", call);
    fflush(stdout);
}

static void *reader(void *unused) {
    char c;
    for (;;)
        if (read(pipe_fds[0], &c, 1) < 0 && errno == EINTR) report("read");
    return unused;
}

static void *sleeper(void *unused) {
    for (;;) {
        struct timespec delay = {0, 3 * 1000 * 1000};
        if (nanosleep(&delay, NULL) < 0 && errno == EINTR) report("nanosleep");
    }
    return unused;
}

static void *waiter(void *unused) {
    pthread_mutex_lock(&lock);
    for (;;) pthread_cond_wait(&never, &lock);
    return unused;
}

static void *spinner(void *unused) {
    for (;;) spins++;
    return unused;
}

int main(void) {
    pthread_t thread;
    if (pipe(pipe_fds) != 0) return 1;
    pthread_create(&thread, NULL, reader, NULL);
    pthread_create(&thread, NULL, sleeper, NULL);
    pthread_create(&thread, NULL, waiter, NULL);
    pthread_create(&thread, NULL, spinner, NULL);
    printf("%s\n", part_f() ? "ready" : "no backtrace");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        printf("f=%d g=%d h=%d\n", part_f(), part_g(), part_h());
        fflush(stdout);
    }
    return 0;
}
#endif
