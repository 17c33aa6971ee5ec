#include <stdio.h>
#include <stdlib.h>

/* Four connections; each request names one. */
struct conn { int id; };
struct conn conns[4];

__attribute__((noinline)) int serve(int n)
{
    struct conn *c = &conns[(unsigned)n % 4];
    c->id = (int)((unsigned)n % 4);
    return c->id;
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
