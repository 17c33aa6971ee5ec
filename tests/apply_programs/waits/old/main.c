/* waits: a patched function that is live, blocked, until told.
 * "enter" makes a worker thread call handle(), which blocks reading a pipe
 * until "release" writes to it; "ask" prints handle()'s answer for a quick
 * call from the main thread (when no worker is inside it). Another thread
 * spins, so the process is never idle. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int gate[2], entered[2];
static volatile unsigned long spins;

__attribute__((noipa)) const char *answer(void) { return "waits v1"; }

__attribute__((noipa)) const char *handle(int wait) {
    if (wait) {
        char c;
        if (write(entered[1], "e", 1) != 1 || read(gate[0], &c, 1) != 1) return "broken";
    }
    return answer();
}

static void *worker(void *unused) {
    printf("worker got %s\n", handle(1));
    fflush(stdout);
    return unused;
}

static void *spinner(void *unused) {
    for (;;) spins++;
    return unused;
}

int main(void) {
    char line[64], c;
    pthread_t thread;
    if (pipe(gate) != 0 || pipe(entered) != 0) return 1;
    pthread_create(&thread, NULL, spinner, NULL);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "enter", 5) == 0) {
            pthread_create(&thread, NULL, worker, NULL);
            if (read(entered[0], &c, 1) == 1) printf("entered\n");
        } else if (strncmp(line, "release", 7) == 0) {
            if (write(gate[1], "g", 1) != 1) return 1;
            pthread_join(thread, NULL);
        } else {
            printf("%s\n", handle(0));
        }
        fflush(stdout);
    }
    return 0;
}
