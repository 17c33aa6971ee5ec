extern int max_connections;

/* What the status page shows as the limit. */
__attribute__((noinline)) int current_limit(void)
{
    return max_connections;
}
