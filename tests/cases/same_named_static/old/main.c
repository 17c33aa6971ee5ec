#include <stdio.h>
#include <stdlib.h>

int config_timeout(int requested);
int request_size(int requested);

/* Each line is a requested value: answers the timeout and the request size for it. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int requested = atoi(line);
        printf("%d %d\n", config_timeout(requested), request_size(requested));
        fflush(stdout);
    }
    return 0;
}
