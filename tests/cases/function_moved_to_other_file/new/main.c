#include <stdio.h>
#include <stdlib.h>

int parse_length(int raw);
int default_window(void);

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d %d\n", parse_length(atoi(line)), default_window());
        fflush(stdout);
    }
    return 0;
}
