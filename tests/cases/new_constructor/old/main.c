#include <stdio.h>
#include <stdlib.h>

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
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", popcount8((unsigned char)atoi(line)));
        fflush(stdout);
    }
    return 0;
}
