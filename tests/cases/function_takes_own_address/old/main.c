#include <stdio.h>
#include <stdlib.h>

typedef int (*handler_fn)(int);

/* The handler installed for the next request; the default one installs itself. */
static handler_fn installed;

__attribute__((noinline)) int default_handler(int x)
{
    if (!installed)
        installed = default_handler;
    return x + 1;
}

/* Whether the default handler is the one installed (unchanged code, compares addresses). */
__attribute__((noinline)) int is_default(void)
{
    return installed == default_handler;
}

__attribute__((noinline)) int serve(int x)
{
    handler_fn h = installed ? installed : default_handler;
    return h(x);
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int x = atoi(line);
        int r = serve(x);
        printf("%d %d\n", r, is_default());
        fflush(stdout);
    }
    return 0;
}
