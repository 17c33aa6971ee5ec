#include <stdio.h>
#include <string.h>

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
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%u\n", compute((const unsigned char *)line, (int)strlen(line)));
        fflush(stdout);
    }
    return 0;
}
