/* Request parsing. */
int clamp_length(int length);

__attribute__((noinline)) int parse_length(int raw)
{
    return clamp_length(raw < 0 ? -raw : raw);
}

/* Longest body accepted. */
__attribute__((noinline)) int clamp_length(int length)
{
    return length > 4096 ? 4096 : length;
}
