/* A server loop that never returns: always on the main thread's stack. */
#include <stdio.h>
#include <time.h>

static volatile unsigned long ticks;

__attribute__((noinline)) static void tick(void) { ticks++; }

__attribute__((noinline)) static void serve_forever(void) {
    struct timespec pause = {0, 2 * 1000 * 1000};
    for (;;) {
        tick();
        nanosleep(&pause, NULL);
    }
}

int main(void) {
    printf("ready\n");
    fflush(stdout);
    serve_forever();
    return 0;
}
