#include <stdio.h>
#include <stdlib.h>

/* Connection states. */
enum conn_state { IDLE, CONNECTING, BUSY, CLOSED };

static enum conn_state state = IDLE;

__attribute__((noinline)) void on_event(int event)
{
    if (event > 100)
        state = CLOSED;
    else if (event > 10)
        state = BUSY;
    else if (event > 0)
        state = CONNECTING;
    else
        state = IDLE;
}

__attribute__((noinline)) const char *state_name(void)
{
    switch (state) {
    case IDLE: return "idle";
    case CONNECTING: return "connecting";
    case BUSY: return "busy";
    case CLOSED: return "closed";
    }
    return "?";
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        on_event(atoi(line));
        printf("%s\n", state_name());
        fflush(stdout);
    }
    return 0;
}
