/* Per-thread nesting depth of the parser. */
__thread int parse_depth;

__attribute__((noinline)) int enter_block(void)
{
    return ++parse_depth;
}
