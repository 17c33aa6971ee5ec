#include <stdio.h>

/* Reads a size setting like "4096"; -1 when it is not a number. */
__attribute__((noinline)) long parse_size(const char *text)
{
    long value = 0;
    if (!*text)
        return -1;
    for (; *text; text++) {
        if (*text < '0' || *text > '9')
            return -1;
        value = value * 10 + (*text - '0');
    }
    return value;
}

int main(void)
{
    static const char *const settings[] = { "4096", "0x1000", "12k" };
    for (int i = 0; i < 3; i++)
        printf("%s -> %ld\n", settings[i], parse_size(settings[i]));
    return 0;
}
