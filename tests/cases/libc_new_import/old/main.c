#include <stdio.h>
#include <string.h>

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
