#include <stdio.h>

/* Latency histogram, now 16 buckets: bucket i counts samples below 2^i ms. */
unsigned histogram[16];

__attribute__((noinline)) void record_latency(unsigned ms)
{
    unsigned bucket = 0;
    while (bucket < 15 && ms >= (1u << bucket))
        bucket++;
    histogram[bucket]++;
}

int main(void)
{
    static const unsigned samples[] = { 1, 3, 12, 700, 40, 90000 };
    for (unsigned i = 0; i < 6; i++)
        record_latency(samples[i]);
    for (unsigned i = 0; i < sizeof histogram / sizeof histogram[0]; i++)
        printf("%u ", histogram[i]);
    printf("\n");
    return 0;
}
