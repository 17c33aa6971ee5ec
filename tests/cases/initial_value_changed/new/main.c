#include <stdio.h>

/* Tunables, read by the code on every call. */
int max_retries = 5;
int retry_gap_ms = 200;

/* Total time a client may wait before giving up. */
__attribute__((noinline)) int worst_case_wait(void)
{
    /* The gap doubles after each retry. */
    return retry_gap_ms * ((1 << max_retries) - 1);
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
