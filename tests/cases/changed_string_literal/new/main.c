#include <stdio.h>
#include <string.h>

__attribute__((noinline)) void report(const char *name, int value)
{
    printf("%s: %d (configured)\n", name, value);
}

__attribute__((noinline)) void report_error(const char *name)
{
    printf("error: %s is not set\n", name);
}

/* A line "name" reports its length; an empty line is an error. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0])
            report(line, (int)strlen(line));
        else
            report_error("name");
        fflush(stdout);
    }
    return 0;
}
