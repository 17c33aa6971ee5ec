#include <stdio.h>
#include <stdlib.h>

/* Latency histogram, now 16 buckets: bucket i counts samples below 2^i ms. */
unsigned histogram[16];
/* The bucket the last sample went to: a pointer into the histogram, set at build time. */
unsigned *last_bucket = histogram;

__attribute__((noinline)) void record_latency(unsigned ms)
{
    unsigned bucket = 0;
    while (bucket < 15 && ms >= (1u << bucket))
        bucket++;
    last_bucket = &histogram[bucket];
    (*last_bucket)++;
}

__attribute__((noinline)) void print_histogram(void)
{
    for (unsigned i = 0; i < sizeof histogram / sizeof histogram[0]; i++)
        printf("%u ", histogram[i]);
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
