#include <stdio.h>
#include <stdlib.h>

typedef int (*event_handler)(int event);

/* The default handler; callbacks registered as this one are "unset". */
__attribute__((noinline)) int default_handler(int event)
{
    return event * 2 + (event >> 4);
}

__attribute__((noinline)) static int audit_handler(int event)
{
    return event + 1000;
}

static event_handler handlers[4] = { default_handler, audit_handler, default_handler, default_handler };

/* Runs the handler of a slot; says whether a custom one was installed. */
__attribute__((noinline)) int dispatch(int slot, int event)
{
    event_handler cb = handlers[slot & 3];
    if (cb == default_handler)
        printf("slot %d: default\n", slot);
    return cb(event);
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int n = atoi(line);
        printf("%d\n", dispatch(n, n - 3));
        fflush(stdout);
    }
    return 0;
}
