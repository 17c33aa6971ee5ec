/* Request sizes, in bytes. */
__attribute__((noinline)) static int normalize(int value)
{
    if (value > 4096)
        return 4096;
    /* Sizes are rounded up to whole 16-byte blocks. */
    return (value + 15) & ~15;
}

int request_size(int requested)
{
    return normalize(requested) + 64;
}
