/* The main thread starts the workers and exits with pthread_exit: the process
 * lives on in its other threads while its leader is a zombie.
 *
 * The server thread waits until the main thread is gone (state Z in
 * /proc/self/task/PID/stat), prints "ready", then answers stdin:
 *   ping -> "pong <version()>" (version() is what the patch changes)
 * An idle thread sleeps all along; EOF on stdin ends the process.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) const char *version(void) { return "mainexit v1"; }

static int main_thread_gone(void) {
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
    FILE *file = fopen(path, "r");
    if (file == NULL) return 1;
    size_t got = fread(stat, 1, sizeof stat - 1, file);
    fclose(file);
    stat[got] = '\0';
    char *end = strrchr(stat, ')');
    return end != NULL && (end[2] == 'Z' || end[2] == 'X');
}

static void *idle(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec rest = {3600, 0};
        nanosleep(&rest, NULL);
    }
    return NULL;
}

static void *server(void *arg) {
    char line[64];
    struct timespec moment = {0, 1000 * 1000};
    (void)arg;
    while (!main_thread_gone()) nanosleep(&moment, NULL);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "ping", 4) == 0) printf("pong %s\n", version());
        else printf("unknown\n");
        fflush(stdout);
    }
    exit(0);
}

int main(void) {
    pthread_t threads[2];
    pthread_create(&threads[0], NULL, server, NULL);
    pthread_create(&threads[1], NULL, idle, NULL);
    pthread_exit(NULL);
}
