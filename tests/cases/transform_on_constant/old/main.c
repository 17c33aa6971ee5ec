#include <stdio.h>
#include <stdlib.h>

/* Delays by retry count: a constant table. */
const int delays[4] = {10, 20, 40, 80};

__attribute__((noinline)) int delay_for(int retry)
{
    return delays[(unsigned)retry % 4];
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", delay_for(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
