#include <stdio.h>
#include <stdlib.h>

/* Rate limiter: accepts a request unless the burst is exhausted. */
__attribute__((noinline)) int accept_request(int burst_used)
{
    return burst_used < 4;
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
