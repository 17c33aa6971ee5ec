#include <assert.h>

/* Running mean of the samples seen so far. */
static long total;
static int samples;

void stats_add(int value)
{
    assert(value >= 0);
    total += value;
    samples++;
}

int stats_mean(void)
{
    return samples ? (int)(total / samples) : 0;
}
