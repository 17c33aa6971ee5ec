#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

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

/* Parses a document of nested blocks on the calling thread. */
static void *worker(void *arg)
{
    int blocks = *(const int *)arg, deepest = 0;
    parse_depth = 0;
    for (int i = 0; i < blocks; i++)
        deepest = enter_block();
    printf("%d\n", deepest);
    return NULL;
}

/* Each line is a number of blocks: parsed on a new thread, then on the main one. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        pthread_t thread;
        int blocks = atoi(line);
        if (pthread_create(&thread, NULL, worker, &blocks) != 0)
            return 1;
        pthread_join(thread, NULL);
        worker(&blocks);
        fflush(stdout);
    }
    return 0;
}
