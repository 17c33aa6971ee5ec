/* Timeouts from the configuration, in milliseconds. */
__attribute__((noinline)) static int normalize(int value)
{
    if (value < 10)
        return 10;
    return value - value % 10;
}

int config_timeout(int requested)
{
    return normalize(requested) * 2;
}
