#include <pthread.h>
#include <stdio.h>

extern __thread int parse_depth;
int enter_block(void);

__attribute__((noinline)) int leave_block(void)
{
    return --parse_depth;
}

static void *worker(void *arg)
{
    int blocks = *(const int *)arg, deepest = 0;
    for (int i = 0; i < blocks; i++)
        deepest = enter_block();
    for (int i = 0; i < blocks + 2; i++)
        leave_block();
    printf("deepest %d, now %d\n", deepest, parse_depth);
    return NULL;
}

int main(void)
{
    pthread_t thread;
    int blocks = 5;
    if (pthread_create(&thread, NULL, worker, &blocks) != 0)
        return 1;
    pthread_join(thread, NULL);
    worker(&blocks);
    return 0;
}
