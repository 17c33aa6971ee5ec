#include <stdio.h>

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
        return 0;  /* an empty batch now averages to 0 */
    }
    long sum = 0;
    for (int i = 0; i < count; i++)
        sum += values[i];
    return (int)(sum / count);
}

int main(void)
{
    static const int batch[] = { 3, 5, 8, 13 };
    printf("%d %d\n", batch_average(batch, 4), batch_average(batch, 0));
    return 0;
}
