/* Shadow variables: a new field on objects that already live on the heap.
 * Commands: "c" creates a connection, "h N" handles a request on connection N, "d N" drops it. */
#include <stdio.h>
#include <stdlib.h>
#include <buildhook.h>

#define SHADOW_HITS 1  /* requests handled: a field struct conn does not have in the running release */

struct conn { int id; };
struct conn *conns[64];
int nconns;

__attribute__((noinline)) int create(void)
{
    struct conn *c = malloc(sizeof *c);
    c->id = nconns;
    conns[nconns] = c;
    return nconns++;
}

__attribute__((noinline)) void handle(struct conn *c)
{
    int *hits = buildhook_shadow_get(c, SHADOW_HITS);
    if (!hits)
        hits = buildhook_shadow_alloc(c, SHADOW_HITS, sizeof *hits);
    printf("conn %d hits %d\n", c->id, ++*hits);
}

__attribute__((noinline)) void drop(struct conn *c)
{
    conns[c->id] = NULL;
    buildhook_shadow_free(c, SHADOW_HITS);
    free(c);
    printf("dropped\n");
}

int main(void)
{
    char command;
    int n;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (scanf(" %c", &command) == 1) {
        if (command == 'c')
            printf("conn %d\n", create());
        else if (command == 'h' && scanf("%d", &n) == 1 && n >= 0 && n < 64 && conns[n])
            handle(conns[n]);
        else if (command == 'd' && scanf("%d", &n) == 1 && n >= 0 && n < 64 && conns[n])
            drop(conns[n]);
    }
    return 0;
}
