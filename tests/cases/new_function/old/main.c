#include <stdio.h>
#include <stdlib.h>

/* Average of the positive values of a series. */
__attribute__((noinline)) int compute(const int *values, int count)
{
    int sum = 0, used = 0;
    for (int i = 0; i < count; i++) {
        if (values[i] > 0) {
            sum += values[i];
            used++;
        }
    }
    return used ? sum / used : 0;
}

/* Each line is a series of numbers; answers the average of its positive ones. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int values[32], count = 0;
        char *text = line, *end;
        while (count < 32) {
            long value = strtol(text, &end, 10);
            if (end == text)
                break;
            values[count++] = (int)value;
            text = end;
        }
        printf("%d\n", compute(values, count));
        fflush(stdout);
    }
    return 0;
}
