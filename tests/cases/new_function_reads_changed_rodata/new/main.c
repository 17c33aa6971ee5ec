#include <stdio.h>
#include <stdlib.h>

/* Weights of the four scoring rules. */
static const int weights[4] = { 5, 3, 2, 7 };

__attribute__((noinline)) int score(int x)
{
    return weights[x & 3] * x;
}

/* New: the weight of a rule, for negative requests. */
__attribute__((noinline)) int rule_weight(int rule)
{
    return weights[rule & 3];
}

__attribute__((noinline)) int handle(int x)
{
    return x < 0 ? rule_weight(-x) : score(x);
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
