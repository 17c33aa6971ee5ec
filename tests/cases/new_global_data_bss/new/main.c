#include <stdio.h>

/* New in this version: the burst size is a tunable, rejections are counted. */
int burst_limit = 6;
static int rejected;

/* Rate limiter: accepts a request unless the burst is exhausted. */
__attribute__((noinline)) int accept_request(int burst_used)
{
    if (burst_used < burst_limit)
        return 1;
    rejected++;
    if (rejected % 100 == 0)
        printf("%d requests rejected\n", rejected);
    return 0;
}

int main(void)
{
    int accepted = 0;
    for (int i = 0; i < 10; i++)
        accepted += accept_request(i);
    printf("%d\n", accepted);
    return 0;
}
