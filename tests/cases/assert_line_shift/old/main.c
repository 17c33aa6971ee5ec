#include <assert.h>
#include <stdio.h>

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

int main(void)
{
    struct ring ring = { .head = 0 };
    for (int i = 1; i <= 5; i++)
        ring_push(&ring, i * i);
    int sum = 0;
    while (ring.count > 0)
        sum += ring_pop(&ring);
    printf("%d\n", sum);
    return 0;
}
