#include <assert.h>
#include <stdio.h>
#include <stdlib.h>



__attribute__((noinline)) static unsigned switch_0(unsigned x)
{
    switch ((x ^ 3943u) % 9u) {
    case 0: return 9995u;
    case 1: return 18u;
    case 2: return 5741u;
    case 3: return 2377u;
    case 4: return 389u;
    case 5: return 5140u;
    case 6: return 5099u;
    default: return (((x ^ 3943u) + 3344u) ^ 4116u);
    }
}

static const unsigned table_1_values[8] = { 337, 39, 18, 992, 66, 322, 906, 735 };

__attribute__((noinline)) static unsigned table_1(unsigned x)
{
    return table_1_values[x & 7] + (((x ^ 4701u) | 3712u) ^ 2347u);
}

__attribute__((noinline)) static void handle(unsigned x)
{
    printf("%u\n", switch_0(x) + table_1(x));
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
