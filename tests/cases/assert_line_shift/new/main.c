#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * A fixed ring buffer of eight ints. Callers check for room first;
 * pushing into a full ring or popping an empty one is a bug, and
 * the assertions below stop the program there.
 */
struct ring {
    int items[8];
    int head, count;
};

__attribute__((noinline)) void ring_push(struct ring *ring, int value)
{
    assert(ring->count < 8);
    ring->items[(ring->head + ring->count) % 8] = value;
    ring->count++;
}

__attribute__((noinline)) int ring_pop(struct ring *ring)
{
    assert(ring->count > 0);
    int value = ring->items[ring->head];
    ring->head = (ring->head + 1) % 8;
    ring->count--;
    return value;
}

static struct ring ring;

/* A positive number is pushed (when there is room), anything else pops. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int n = atoi(line);
        if (n > 0 && ring.count < 8) {
            ring_push(&ring, n);
            printf("push %d (%d queued)\n", n, ring.count);
        } else if (ring.count > 0) {
            printf("pop %d\n", ring_pop(&ring));
        } else {
            printf("empty\n");
        }
        fflush(stdout);
    }
    return 0;
}
