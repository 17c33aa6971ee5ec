#include <stdio.h>
#include <stdlib.h>

/* Statistics kept together in one named section (bytes at 0, errors at 8, requests at 12). */
#define STAT __attribute__((section(".data.stats")))
static int STAT requests = 0;
static int STAT errors = 0;
static long STAT bytes = 0;

__attribute__((noinline)) void account(int size)
{
    requests++;
    if (size < 0)
        errors += 1;
    else
        bytes += size;
}

__attribute__((noinline)) long summary(void)
{
    return requests * 1000000L + errors * 1000L + bytes;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        account(atoi(line));
        printf("%ld\n", summary());
        fflush(stdout);
    }
    return 0;
}
