#include <stdio.h>
#include <stdlib.h>

/* Retry delays in ms, and the configuration that points at them. */
static const int default_delays[4] = { 10, 20, 40, 80 };

struct retry_config {
    const int *delays;
    int attempts;
};

static struct retry_config config = { default_delays, 4 };

__attribute__((noinline)) int delay_for(int attempt)
{
    return config.delays[attempt & 3];
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
