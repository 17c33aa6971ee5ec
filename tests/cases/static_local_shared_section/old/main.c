#include <stdio.h>
#include <stdlib.h>

/* A connection's state machine: 1 opens, 2 closes, anything else is data. */
__attribute__((noinline)) int step(int cmd)
{
    static int state;
    static int events;

    events++;
    if (cmd == 1)
        state = 1;
    else if (cmd == 2)
        state = 2;
    return events * 10 + state;   /* the answer carries the state */
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", step(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
