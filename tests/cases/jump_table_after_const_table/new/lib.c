#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

const unsigned global_table_2_values[8] = { 728, 809, 4, 912, 1977, 850, 804, 799 };


__attribute__((noinline)) unsigned switch_3(unsigned x)
{
    switch ((x ^ 1718u) % 11u) {
    case 0: return 4285u;
    case 1: return 6821u;
    case 2: return 2518u;
    case 3: return 7228u;
    case 4: return 777u;
    case 5: return 8038u;
    case 6: return 2703u;
    case 7: return 3817u;
    case 8: return 6244u;
    default: return (((x & 1718u) ^ 2854u) ^ 3803u);
    }
}
