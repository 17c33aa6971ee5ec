#include <stdio.h>
#include <stdlib.h>

void stats_add(int value);
int stats_mean(void);

/* Each line is a latency sample in ms (negative ones are dropped). */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int latency = atoi(line);
        if (latency >= 0)
            stats_add(latency);
        printf("mean latency %d ms (%s)\n", stats_mean(), __FILE__);
        fflush(stdout);
    }
    return 0;
}
