#include <stdio.h>
#include <stdlib.h>

/* Exponential back-off: base * 2^attempt, capped at 30 s. */
__attribute__((noinline)) static int retry_delay(int attempt, int base_ms)
{
    int delay = base_ms;
    for (int i = 0; i < attempt && delay < 30000; i++)
        delay *= 2;
    return delay < 30000 ? delay : 30000;
}

/* When to retry a failed connection, in ms from now.  The base is no
   longer configurable (callers still pass it): always 250 ms. */
__attribute__((noinline)) int schedule_retry(int attempt, int base_ms)
{
    (void)base_ms;
    return retry_delay(attempt, 250) + attempt;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", schedule_retry(atoi(line), 100));
        fflush(stdout);
    }
    return 0;
}
