/* Four connections; serve picks the one a request names and counts it, in a shadow field. */
#include <buildhook.h>

struct conn { int id; };
struct conn conns[4];

__attribute__((noinline)) struct conn *serve(int n)
{
    struct conn *c = &conns[(unsigned)n % 4];
    c->id = (int)((unsigned)n % 4);
    int *requests = buildhook_shadow_get(c, 1);
    if (!requests)
        requests = buildhook_shadow_alloc(c, 1, sizeof *requests);
    ++*requests;
    return c;
}
