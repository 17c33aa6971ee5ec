#include <stdio.h>

/* Now reopens: says it closes the file first, with the message close_log uses. */
__attribute__((noinline)) void open_log(const char *path)
{
    printf("closing %s\n", path);
    printf("opening %s\n", path);
}

__attribute__((noinline)) void close_log(const char *path, int lines)
{
    printf("closing %s\n", path);
    printf("%d lines written\n", lines);
}

int main(void)
{
    open_log("server.log");
    close_log("server.log", 12);
    return 0;
}
