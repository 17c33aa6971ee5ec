#include <stdio.h>
#include <stdlib.h>

extern const int max_connections;

int current_limit(void);

/* Admits a request for n connections. */
__attribute__((noinline)) int admit(int n)
{
    return n <= max_connections;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int n = atoi(line);
        printf("%d %d\n", admit(n), current_limit());
        fflush(stdout);
    }
    return 0;
}
