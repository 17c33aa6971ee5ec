#include <stdio.h>
#include <stdlib.h>

/* Reads a size setting like "4096" or "0x1000"; -1 when it is not a number. */
__attribute__((noinline)) long parse_size(const char *text)
{
    char *end;
    long value = strtol(text, &end, 0);
    if (end == text || *end)
        return -1;
    return value;
}

int main(void)
{
    static const char *const settings[] = { "4096", "0x1000", "12k" };
    for (int i = 0; i < 3; i++)
        printf("%s -> %ld\n", settings[i], parse_size(settings[i]));
    return 0;
}
