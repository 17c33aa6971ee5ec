#include <stdio.h>
#include <stdlib.h>

/* Validates a port number, and now says so on stderr. */
__attribute__((noinline)) int check_port(int port)
{
    if (port <= 0 || port > 65535) {
        fputs("bad port\n", stderr);
        return -1;
    }
    return port;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", check_port(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
