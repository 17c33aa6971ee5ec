#include <stdio.h>
#include <stdlib.h>
#include <buildhook.h>

#define SHADOW_REQUESTS 1  /* a per-connection count struct conn has no room for */

/* Four connections; each request names one. */
struct conn { int id; };
struct conn conns[4];

__attribute__((noinline)) int serve(int n)
{
    struct conn *c = &conns[(unsigned)n % 4];
    c->id = (int)((unsigned)n % 4);
    int *requests = buildhook_shadow_get(c, SHADOW_REQUESTS);
    if (!requests)
        requests = buildhook_shadow_alloc(c, SHADOW_REQUESTS, sizeof *requests);
    return c->id * 100 + ++*requests;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", serve(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
