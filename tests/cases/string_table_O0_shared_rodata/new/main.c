#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

const char *names_4(unsigned x);


__attribute__((noinline)) static void handle(unsigned x)
{
    printf("%u %s\n", 0u, names_4(x));
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        handle((unsigned)strtoul(line, NULL, 10));
        fflush(stdout);
    }
    return 0;
}
