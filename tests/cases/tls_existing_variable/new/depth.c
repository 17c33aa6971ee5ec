/* Per-thread nesting depth of the parser. */
__thread int parse_depth;

__attribute__((noinline)) int enter_block(void)
{
    if (parse_depth >= 64)   /* new: nesting is limited */
        return parse_depth;
    return ++parse_depth;
}
