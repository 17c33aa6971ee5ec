/* The count serve keeps, read from another file: one shadow table for the whole program. */
#include <buildhook.h>

struct conn { int id; };
struct conn *serve(int n);

__attribute__((noinline)) int report(int n)
{
    struct conn *c = serve(n);
    int *requests = buildhook_shadow_get(c, 1);
    return c->id * 100 + (requests ? *requests : -1);
}
