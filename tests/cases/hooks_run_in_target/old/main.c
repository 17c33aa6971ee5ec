#include <stdio.h>
#include <stdlib.h>

/* A running total of the numbers seen. */
long total;

__attribute__((noinline)) long add(int x)
{
    total += x;
    return total;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%ld\n", add(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
