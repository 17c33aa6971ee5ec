#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

const char *strings_1(unsigned x);
extern const unsigned global_table_3_values[8];

__attribute__((noinline)) static unsigned global_table_3(unsigned x)
{
    return global_table_3_values[x & 7] + (((x & 4509u) - 3622u) ^ 3182u);
}

__attribute__((noinline)) static void handle(unsigned x)
{
    printf("%u %s\n", global_table_3(x), strings_1(x));
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
