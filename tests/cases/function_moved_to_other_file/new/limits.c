/* Limits (nothing here yet but the default window). */
__attribute__((noinline)) int default_window(void)
{
    return 64;
}

/* Longest body accepted: moved here from parse.c, and the limit is now 512. */
__attribute__((noinline)) int clamp_length(int length)
{
    return length > 512 ? 512 : length;
}
