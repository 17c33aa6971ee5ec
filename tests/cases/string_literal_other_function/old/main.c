#include <stdio.h>

__attribute__((noinline)) void open_log(const char *path)
{
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
