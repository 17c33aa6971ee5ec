#include <stdio.h>
#include <stdlib.h>

/* Error reporting is marked cold: GCC moves the paths that call it out of line. */
__attribute__((cold, noinline)) static void report_bad_batch(const char *reason, int count)
{
    printf("bad batch: %s (count %d)\n", reason, count);
}

/* Average of a batch of samples. */
__attribute__((noinline)) int batch_average(const int *values, int count)
{
    if (count <= 0) {
        report_bad_batch("empty", count);
        return -1;
    }
    long sum = 0;
    for (int i = 0; i < count; i++)
        sum += values[i];
    return (int)(sum / count);
}

/* A line n averages the first n % 5 samples (none or fewer: a bad batch). */
int main(void)
{
    static const int batch[] = { 3, 5, 8, 13 };
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", batch_average(batch, atoi(line) % 5));
        fflush(stdout);
    }
    return 0;
}
