#include <stdio.h>

/* Parses a port number. */
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

int main(void)
{
    printf("%d %d %d\n", parse_port("8080"), parse_port("80a"), parse_port("99999"));
    return 0;
}
