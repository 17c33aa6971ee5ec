#include <stdio.h>
#include <stdlib.h>

/* Latency histogram: bucket i counts samples below 2^i ms. */
unsigned histogram[8];
unsigned bucket_value(unsigned i);

__attribute__((noinline)) void record_latency(unsigned ms)
{
    unsigned bucket = 0;
    while (bucket < 7 && ms >= (1u << bucket))
        bucket++;
    histogram[bucket]++;
}

__attribute__((noinline)) void print_histogram(void)
{
    for (unsigned i = 0; i < 8; i++)
        printf("%u ", bucket_value(i));
    printf("\n");
}

/* Each line is a latency sample in ms; the answer is the histogram so far. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        record_latency((unsigned)atoi(line));
        print_histogram();
        fflush(stdout);
    }
    return 0;
}
