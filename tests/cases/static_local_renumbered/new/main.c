#include <stdio.h>

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

int main(void)
{
    serve(2);
    serve(1);
    return 0;
}
