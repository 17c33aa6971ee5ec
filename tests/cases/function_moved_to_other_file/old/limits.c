/* Limits: the default window, clamped like any length. */
int clamp_length(int length);

__attribute__((noinline)) int default_window(void)
{
    return clamp_length(600);
}
