#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <buildhook.h>

/* Delays by retry count: a constant table. */
const int delays[4] = {10, 25, 50, 100};

/* Misplaced: a constant needs no migration (the patch carries the new table whole). */
static void keep_delays(void *new_delays, const void *old_delays)
{
    memcpy(new_delays, old_delays, sizeof delays);
}
BUILDHOOK_TRANSFORM(delays, keep_delays);

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
