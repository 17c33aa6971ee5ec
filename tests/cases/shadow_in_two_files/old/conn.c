/* Four connections; serve picks the one a request names. */
struct conn { int id; };
struct conn conns[4];

__attribute__((noinline)) struct conn *serve(int n)
{
    struct conn *c = &conns[(unsigned)n % 4];
    c->id = (int)((unsigned)n % 4);
    return c;
}
