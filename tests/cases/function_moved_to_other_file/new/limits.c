/* Limits: the default window, clamped like any length. */
int clamp_length(int length);

__attribute__((noinline)) int default_window(void)
{
    return clamp_length(600);
}

/* Longest body accepted: moved here from parse.c, and the limit is now 512. */
__attribute__((noinline)) int clamp_length(int length)
{
    return length > 512 ? 512 : length;
}
