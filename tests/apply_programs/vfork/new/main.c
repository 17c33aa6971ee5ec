/* One thread vforks a child that stays until released; the others go on.
 *
 * stdin commands, one a line, answered by the main thread:
 *   ping    -> "pong <version()>" (version() is what the patch changes)
 *   vfork   -> the vforker thread vforks a child that writes "child sleeping"
 *              and waits for "release" (at most CHILD_MAX_MS), then _exits;
 *              the vforker, blocked in vfork meanwhile (in an uninterruptible
 *              wait: it cannot be stopped), then prints "child exited"
 *   release -> lets the child exit (no answer)
 *   gap     -> "gap <µs>": the longest time between two ticks of the ticker
 *              thread (one every millisecond) since the last "gap"; a ptrace
 *              stop of the whole process shows up here
 * The first line is "ready <tid of the vforker>".
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_MAX_MS 60000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t asked = PTHREAD_COND_INITIALIZER;
static int vforks_asked;
static volatile pid_t vforker_tid;
static long max_gap_us;
static int release_pipe[2];

__attribute__((noinline)) const char *version(void) { return "v2"; }

static long now_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000000L + now.tv_nsec / 1000;
}

static void *ticker(void *arg) {
    struct timespec tick = {0, 1000 * 1000};
    long last = now_us();
    (void)arg;
    for (;;) {
        nanosleep(&tick, NULL);
        long now = now_us();
        long gap = now - last;
        long seen = __atomic_load_n(&max_gap_us, __ATOMIC_RELAXED);
        while (gap > seen && !__atomic_compare_exchange_n(&max_gap_us, &seen, gap, 0, __ATOMIC_RELAXED,
                                                          __ATOMIC_RELAXED)) {
        }
        last = now;
    }
    return NULL;
}

static void *vforker(void *arg) {
    (void)arg;
    vforker_tid = gettid();
    for (;;) {
        pthread_mutex_lock(&lock);
        while (vforks_asked == 0) pthread_cond_wait(&asked, &lock);
        vforks_asked--;
        pthread_mutex_unlock(&lock);
        pid_t child = vfork();
        if (child == 0) {
            /* Only system calls here: the child borrows the parent's memory and stack.  Its copy of
             * the write end is closed, so the read end reports EOF if the parent process dies. */
            static const char line[] = "child sleeping\n";
            struct pollfd released = {release_pipe[0], POLLIN, 0};
            close(release_pipe[1]);
            if (write(1, line, sizeof line - 1) < 0) _exit(2);
            poll(&released, 1, CHILD_MAX_MS);
            _exit(0);
        }
        if (child > 0) {
            struct pollfd release = {release_pipe[0], POLLIN, 0};
            char byte;
            waitpid(child, NULL, 0);
            if (poll(&release, 1, 0) == 1 && read(release_pipe[0], &byte, 1) < 0) perror("read");
        }
        printf("child exited\n");
        fflush(stdout);
    }
    return NULL;
}

int main(void) {
    pthread_t threads[2];
    char line[64];
    if (pipe(release_pipe) != 0) return 1;
    pthread_create(&threads[0], NULL, ticker, NULL);
    pthread_create(&threads[1], NULL, vforker, NULL);
    while (vforker_tid == 0) usleep(1000);
    printf("ready %d\n", (int)vforker_tid);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "ping", 4) == 0) {
            printf("pong %s\n", version());
        } else if (strncmp(line, "vfork", 5) == 0) {
            pthread_mutex_lock(&lock);
            vforks_asked++;
            pthread_cond_signal(&asked);
            pthread_mutex_unlock(&lock);
            continue;
        } else if (strncmp(line, "release", 7) == 0) {
            if (write(release_pipe[1], "x", 1) != 1) perror("write");
            continue;
        } else if (strncmp(line, "gap", 3) == 0) {
            printf("gap %ld\n", __atomic_exchange_n(&max_gap_us, 0, __ATOMIC_RELAXED));
        } else {
            printf("unknown\n");
        }
        fflush(stdout);
    }
    return 0;
}
