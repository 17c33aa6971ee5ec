#include <stdio.h>
#include <math.h>
#include <stdlib.h>

/* The edge of a cube of the given volume, rounded down: now from libm, not a loop. */
__attribute__((noinline)) long edge(long volume)
{
    return volume <= 0 ? 0 : (long)cbrt((double)volume);
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
