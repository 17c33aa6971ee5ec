#include <stdio.h>
#include <stdlib.h>

/* Weights of the four scoring rules. */
static const int weights[4] = { 5, 3, 1, 7 };

__attribute__((noinline)) int score(int x)
{
    return weights[x & 3] * x;
}

__attribute__((noinline)) int handle(int x)
{
    return score(x);
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", handle(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
