#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

extern const unsigned global_table_2_values[8];
unsigned switch_3(unsigned x);

__attribute__((noinline)) static unsigned global_table_2(unsigned x)
{
    return global_table_2_values[x & 7] + (x | 3883u);
}

__attribute__((noinline)) static void handle(unsigned x)
{
    printf("%u\n", global_table_2(x) + switch_3(x));
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        handle((unsigned)strtoul(line, NULL, 10));
        fflush(stdout);
    }
    return 0;
}
