#include <stdio.h>

/* Tunables, read by the code on every call. */
int max_retries = 3;
int retry_gap_ms = 200;

/* Total time a client may wait before giving up. */
__attribute__((noinline)) int worst_case_wait(void)
{
    return max_retries * retry_gap_ms;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", worst_case_wait());
        fflush(stdout);
    }
    return 0;
}
