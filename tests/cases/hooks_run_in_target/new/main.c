#include <stdio.h>
#include <stdlib.h>
#include <buildhook.h>

/* A running total of the numbers seen. */
long total;
/* New: negative numbers count ten times (a new variable, its initial value in the patch). */
int weight = 10;

/* The patch goes in only while the total is in range (a PRE_APPLY check on the running state). */
static int total_in_range(void)
{
    return total < -1000000 || total > 1000000;
}
BUILDHOOK_PRE_APPLY(total_in_range);

/* After the commit: the new code's data must be in place (a POST_APPLY check). */
static void weight_is_set(void)
{
    if (weight != 10)
        abort();
}
BUILDHOOK_POST_APPLY(weight_is_set);

__attribute__((noinline)) long add(int x)
{
    total += x < 0 ? (long)x * weight : x;
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
