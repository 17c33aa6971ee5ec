/* Request sizes, in bytes. */
__attribute__((noinline)) static int normalize(int value)
{
    if (value > 4096)
        return 4096;
    return value;
}

int request_size(int requested)
{
    return normalize(requested) + 64;
}
