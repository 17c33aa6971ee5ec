#include <stdio.h>
#include <stdlib.h>

/* Each kind of object gets its own id sequence. */
__attribute__((noinline)) int next_session_id(void)
{
    static int counter;
    return ++counter;
}

__attribute__((noinline)) int next_request_id(void)
{
    static int counter = 1000;
    return counter++;
}

/* New in this version: transfers are numbered too. */
__attribute__((noinline)) int next_transfer_id(void)
{
    static int counter = 500;
    return counter += 2;
}

__attribute__((noinline)) void serve(int requests)
{
    int session = next_session_id();
    for (int i = 0; i < requests; i++)
        printf("session %d request %d transfer %d\n", session, next_request_id(), next_transfer_id());
}

/* Each line opens a session and serves (the line's number mod 4) requests in it. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        serve(atoi(line) % 4);
        fflush(stdout);
    }
    return 0;
}
