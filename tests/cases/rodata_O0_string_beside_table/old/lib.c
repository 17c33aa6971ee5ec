#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) const char *strings_1(unsigned x)
{
    if (x < 56u)
        return "golf";
    if ((x & 1u) == 0)
        return "bravo";
    return "charlie";
}

const unsigned global_table_3_values[8] = { 907, 237, 176, 351, 115, 604, 925, 81 };

