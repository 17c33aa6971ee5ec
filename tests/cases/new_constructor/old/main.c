#include <stdio.h>

/* Counts the set bits of a byte, one bit at a time. */
__attribute__((noinline)) int popcount8(unsigned char byte)
{
    int bits = 0;
    for (; byte; byte >>= 1)
        bits += byte & 1;
    return bits;
}

int main(void)
{
    int total = 0;
    for (int i = 0; i < 256; i += 37)
        total += popcount8((unsigned char)i);
    printf("%d\n", total);
    return 0;
}
