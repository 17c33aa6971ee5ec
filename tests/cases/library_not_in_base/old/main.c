#include <stdio.h>
#include <stdlib.h>

/* The edge of a cube of the given volume, rounded down. */
__attribute__((noinline)) long edge(long volume)
{
    long e = 0;
    while ((e + 1) * (e + 1) * (e + 1) <= volume)
        e++;
    return e;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%ld\n", edge(atol(line)));
        fflush(stdout);
    }
    return 0;
}
