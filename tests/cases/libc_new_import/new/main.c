#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        printf("%s -> %ld\n", line, parse_size(line));
        fflush(stdout);
    }
    return 0;
}
