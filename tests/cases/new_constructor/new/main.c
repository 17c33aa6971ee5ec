#include <stdio.h>
#include <stdlib.h>

/* New: a table filled at start-up by a constructor.  A patch loaded into a
   running process would never run it, and the table would stay zero. */
static unsigned char bit_counts[256];

__attribute__((constructor)) static void fill_bit_counts(void)
{
    for (int i = 1; i < 256; i++)
        bit_counts[i] = (unsigned char)((i & 1) + bit_counts[i / 2]);
}

/* Counts the set bits of a byte, from the table. */
__attribute__((noinline)) int popcount8(unsigned char byte)
{
    return bit_counts[byte];
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
