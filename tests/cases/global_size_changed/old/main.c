#include <stdio.h>

/* Latency histogram: bucket i counts samples below 2^i ms. */
unsigned histogram[8];

__attribute__((noinline)) void record_latency(unsigned ms)
{
    unsigned bucket = 0;
    while (bucket < 7 && ms >= (1u << bucket))
        bucket++;
    histogram[bucket]++;
}

int main(void)
{
    static const unsigned samples[] = { 1, 3, 12, 700, 40, 90000 };
    for (unsigned i = 0; i < 6; i++)
        record_latency(samples[i]);
    for (unsigned i = 0; i < 8; i++)
        printf("%u ", histogram[i]);
    printf("\n");
    return 0;
}
