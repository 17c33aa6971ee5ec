#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

extern __thread int parse_depth;
int enter_block(void);

__attribute__((noinline)) int leave_block(void)
{
    if (parse_depth > 0)     /* new: never below zero */
        parse_depth--;
    return parse_depth;
}

/* Parses a document of nested blocks on the calling thread, then closes two too many. */
static void *worker(void *arg)
{
    int blocks = *(const int *)arg, deepest = 0;
    parse_depth = 0;
    for (int i = 0; i < blocks; i++)
        deepest = enter_block();
    for (int i = 0; i < blocks + 2; i++)
        leave_block();
    printf("deepest %d, now %d\n", deepest, parse_depth);
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
