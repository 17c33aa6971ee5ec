/* The accept loop and the per-connection threads. */
#include "kvd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Writes DATA followed by a newline, retrying short writes. */
int send_line(int fd, const char *data, size_t len)
{
    char newline = '\n';
    struct iovec iov[2] = {
        { .iov_base = (void *)data, .iov_len = len },
        { .iov_base = &newline, .iov_len = 1 },
    };
    struct iovec *v = iov;
    int count = 2;

    while (count > 0) {
        ssize_t n = writev(fd, v, count);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (count > 0 && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            count--;
        }
        if (count > 0) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/*
 * Reads newline-terminated commands until the peer closes or QUIT.
 * A thread spends its whole life in here, so it is never a patch target.
 */
static void serve_connection(int fd)
{
    char *buf = malloc(LINE_MAX_LEN + 1);
    size_t used = 0;

    if (!buf)
        return;
    for (;;) {
        char *start = buf, *nl;
        ssize_t n = read(fd, buf + used, LINE_MAX_LEN - used);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
        while ((nl = memchr(start, '\n', used - (size_t)(start - buf))) != NULL) {
            *nl = '\0';
            if (nl > start && nl[-1] == '\r')
                nl[-1] = '\0';
            if (protocol_handle_line(fd, start) != 0)
                goto out;
            start = nl + 1;
        }
        used -= (size_t)(start - buf);
        memmove(buf, start, used);
        if (used == LINE_MAX_LEN) {
            static const char too_long[] = "ERR line too long";

            send_line(fd, too_long, sizeof(too_long) - 1);
            break;
        }
    }
out:
    free(buf);
}

static void *connection_thread(void *arg)
{
    int fd = (int)(long)arg;

    serve_connection(fd);
    close(fd);
    log_msg("connection %d closed", fd);
    return NULL;
}

void server_run(int listen_fd)
{
    pthread_attr_t attr;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        pthread_t thread;
        int fd = accept(listen_fd, NULL, NULL);
        int err;

        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                log_msg("accept: %s", strerror(errno));
            continue;
        }
        log_msg("connection %d opened", fd);
        err = pthread_create(&thread, &attr, connection_thread, (void *)(long)fd);
        if (err != 0) {
            log_msg("pthread_create: %s", strerror(err));
            close(fd);
        }
    }
}
