/* Limits (nothing here yet but the default window). */
__attribute__((noinline)) int default_window(void)
{
    return 64;
}
