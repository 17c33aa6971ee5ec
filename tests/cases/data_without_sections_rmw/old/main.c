#include <stdio.h>
#include <stdlib.h>

/* Three counters in one .bss (built without -fdata-sections): misses at 0, hits at 4, mode at 8. */
static char mode;
static int hits;
static int misses;

__attribute__((noinline)) void count(int x)
{
    if (x > 10)
        hits += 1;
    else
        misses += 3;
    mode = (char)(x & 7);
}

__attribute__((noinline)) int report(void)
{
    return hits * 1000 + misses * 10 + mode;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        count(atoi(line));
        printf("%d\n", report());
        fflush(stdout);
    }
    return 0;
}
