#include <stdio.h>
#include <stdlib.h>

/* Feature switch: compression is on from this release. */
__attribute__((noinline)) int compression_enabled(void)
{
    return 1;
}

__attribute__((noinline)) int payload_size(int raw_size)
{
    if (compression_enabled())
        return raw_size / 2 + 16;
    return raw_size;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", payload_size(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
