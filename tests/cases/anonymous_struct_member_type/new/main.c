#include <stdio.h>
#include <stdlib.h>

/* A gauge with a limit; the type has no tag, only a typedef name. */
typedef struct {
    int count;
    float limit;
} gauge_t;

static gauge_t gauge = { 0, 10 };

__attribute__((noinline)) void set_limit(int limit)
{
    gauge.limit = (float)limit;
}

__attribute__((noinline)) int over_limit(void)
{
    return (float)gauge.count > gauge.limit;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int x = atoi(line);
        if (x < 0)
            set_limit(-x);
        else
            gauge.count = x;
        printf("%d\n", over_limit());
        fflush(stdout);
    }
    return 0;
}
