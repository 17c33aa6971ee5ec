#include <stdio.h>

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
    printf("%d %d\n", payload_size(1000), payload_size(64));
    return 0;
}
