#include <stdio.h>
#include <string.h>

__attribute__((noinline)) void open_log(const char *path)
{
    printf("opening %s\n", path);
}

__attribute__((noinline)) void close_log(const char *path, int lines)
{
    printf("closing %s\n", path);
    printf("%d lines written\n", lines);
}

/* Each line is a file name: opens it, then closes it with its length as the line count. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        open_log(line);
        close_log(line, (int)len);
        fflush(stdout);
    }
    return 0;
}
