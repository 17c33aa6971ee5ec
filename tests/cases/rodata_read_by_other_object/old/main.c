#include <stdio.h>
#include <stdlib.h>

extern const int fee_bps[4];

/* The tier of the next request (state across lines lives in the program's data). */
static int tier;

/* The fee for an amount at a tier: reads the table of another object. */
__attribute__((noinline)) long fee(long amount, int tier)
{
    return amount * fee_bps[tier & 3] / 10000;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%ld\n", fee(atol(line) * 100, tier++));
        fflush(stdout);
    }
    return 0;
}
