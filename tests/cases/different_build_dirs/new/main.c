#include <stdio.h>

void stats_add(int value);
int stats_mean(void);

int main(void)
{
    static const int latencies[] = { 12, 7, 31, 9, 18 };
    for (unsigned i = 0; i < sizeof latencies / sizeof latencies[0]; i++)
        stats_add(latencies[i]);
    printf("mean latency %d ms (%s)\n", stats_mean(), __FILE__);
    return 0;
}
