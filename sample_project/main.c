/* kvd entry point: parse arguments, listen on 127.0.0.1, serve forever. */
#include "kvd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: kvd --port N   (0 picks a free port)\n");
    exit(2);
}

static int parse_port(int argc, char **argv)
{
    char *end;
    long port;

    if (argc != 3 || strcmp(argv[1], "--port") != 0)
        usage();
    errno = 0;
    port = strtol(argv[2], &end, 10);
    if (errno || *end || end == argv[2] || port < 0 || port > 65535)
        usage();
    return (int)port;
}

/* Binds the loopback address only: kvd has no authentication. */
static int open_listener(int port)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        perror("kvd: socket");
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)port);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 128) < 0) {
        perror("kvd: listen");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    int fd = open_listener(parse_port(argc, argv));
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);

    signal(SIGPIPE, SIG_IGN);
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
        perror("kvd: getsockname");
        return 1;
    }
    printf("listening on %u\n", (unsigned)ntohs(addr.sin_port));
    fflush(stdout);
    server_run(fd);
}
