#include <stdio.h>
#include <stdlib.h>

/* The greeting for a user level. */
const char *greeting(int level)
{
    if (level > 10)
        return "welcome back, admin";
    return "hello";
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("[%s]\n", greeting(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
