#include <stdio.h>
#include <stdlib.h>

/* New in this version: the burst size is a tunable, rejections are counted. */
int burst_limit = 6;
static int rejected;

/* Rate limiter: accepts a request unless the burst is exhausted. */
__attribute__((noinline)) int accept_request(int burst_used)
{
    if (burst_used < burst_limit)
        return 1;
    rejected++;
    if (rejected % 3 == 0)
        printf("%d requests rejected\n", rejected);
    return 0;
}

/* Each line is the burst used so far; answers whether the request is accepted. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", accept_request(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
