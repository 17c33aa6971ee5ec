#include <stdio.h>

/* Requests allowed per client and minute: a tunable nothing but its users read. */
int rate_limit = 60;

__attribute__((noinline)) int allowed(int used)
{
    return used < rate_limit;
}

/* Requests the client has made so far. */
static int used;

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", allowed(used));
        used += 20;
        fflush(stdout);
    }
    return 0;
}
