#include <stdio.h>
#include <stdlib.h>

int report(int n);

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", report(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
