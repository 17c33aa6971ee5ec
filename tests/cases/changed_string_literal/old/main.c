#include <stdio.h>

__attribute__((noinline)) void report(const char *name, int value)
{
    printf("%s = %d\n", name, value);
}

__attribute__((noinline)) void report_error(const char *name)
{
    printf("error: %s is not set\n", name);
}

int main(void)
{
    report("workers", 4);
    report_error("port");
    return 0;
}
