#include <stdio.h>

/* Rate limiter: accepts a request unless the burst is exhausted. */
__attribute__((noinline)) int accept_request(int burst_used)
{
    return burst_used < 4;
}

int main(void)
{
    int accepted = 0;
    for (int i = 0; i < 10; i++)
        accepted += accept_request(i);
    printf("%d\n", accepted);
    return 0;
}
