#include <stdio.h>

/* Checksum of a buffer: the function the patch fixes. */
__attribute__((noinline)) unsigned compute(const unsigned char *data, int len)
{
    unsigned sum = 0;
    for (int i = 0; i < len; i++)
        sum = sum * 31 + data[i];
    return sum;
}

int main(void)
{
    static const unsigned char message[] = "hello, patch";
    printf("%u\n", compute(message, (int)sizeof message - 1));
    return 0;
}
