#include <stdio.h>
#include <string.h>

/* Parses a port number; the count of bad inputs is gone. */
__attribute__((noinline)) int parse_port(const char *text)
{
    int port = 0;
    for (; *text; text++) {
        if (*text < '0' || *text > '9' || port > 6553) {
            printf("bad port %s\n", text);
            return -1;
        }
        port = port * 10 + (*text - '0');
    }
    return port;
}

/* Each line is a port number; answers it (-1 when it is not one). */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        printf("%d\n", parse_port(line));
        fflush(stdout);
    }
    return 0;
}
