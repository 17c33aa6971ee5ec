#include <pthread.h>
#include <stdio.h>

/* Per-thread nesting depth of the parser. */
__thread int parse_depth;
/* New: the deepest nesting each thread has seen. */
__thread int parse_depth_max;

__attribute__((noinline)) int enter_block(void)
{
    if (++parse_depth > parse_depth_max)
        parse_depth_max = parse_depth;
    return parse_depth;
}

static void *worker(void *arg)
{
    int blocks = *(const int *)arg, deepest = 0;
    for (int i = 0; i < blocks; i++)
        deepest = enter_block();
    printf("%d\n", deepest);
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
