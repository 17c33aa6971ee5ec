#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* A quota per request kind; the assert guards the table bound. */
__attribute__((noinline)) int quota(int kind)
{
    assert(kind >= 0);
    int q = 2500;
    if (kind > 3)
        q = kind * 3;
    return q;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int kind = atoi(line);
        printf("%d\n", quota(kind < 0 ? -kind : kind));
        fflush(stdout);
    }
    return 0;
}
