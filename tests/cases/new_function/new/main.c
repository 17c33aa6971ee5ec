#include <stdio.h>

/* New in this version: values above the cap no longer dominate the average. */
__attribute__((noinline)) static int capped(int value)
{
    return value > 10 ? 10 : value;
}

/* Average of the positive values of a series. */
__attribute__((noinline)) int compute(const int *values, int count)
{
    int sum = 0, used = 0;
    for (int i = 0; i < count; i++) {
        if (values[i] > 0) {
            sum += capped(values[i]);
            used++;
        }
    }
    return used ? sum / used : 0;
}

int main(void)
{
    static const int series[] = { 4, -2, 9, 15, 0, 7 };
    printf("%d\n", compute(series, 6));
    return 0;
}
