/* The text protocol: split a command line, dispatch it, send one reply line. */
#include "kvd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum command {
    CMD_UNKNOWN,
    CMD_PING,
    CMD_SET,
    CMD_GET,
    CMD_INCR,
    CMD_DEL,
    CMD_VERSION,
    CMD_STATS,
    CMD_QUIT,
};

/* One parsed command line; the pointers point into the line itself. */
struct request {
    enum command cmd;
    char *key;   /* first argument, NULL when absent */
    char *value; /* everything after the single space that ends the key, NULL when absent */
};

/* Argument separator (same name as in store.c on purpose). */
static __attribute__((noinline)) int is_blank(int c)
{
    return c == ' ' || c == '\t';
}

static int send_str(int fd, const char *s)
{
    return send_line(fd, s, strlen(s));
}

/* A chain of compares rather than a table, so a new command only changes this function. */
static enum command lookup_command(const char *word)
{
    if (strcasecmp(word, "GET") == 0)
        return CMD_GET;
    if (strcasecmp(word, "SET") == 0)
        return CMD_SET;
    if (strcasecmp(word, "INCR") == 0)
        return CMD_INCR;
    if (strcasecmp(word, "DEL") == 0)
        return CMD_DEL;
    if (strcasecmp(word, "PING") == 0)
        return CMD_PING;
    if (strcasecmp(word, "STATS") == 0)
        return CMD_STATS;
    if (strcasecmp(word, "VERSION") == 0)
        return CMD_VERSION;
    if (strcasecmp(word, "QUIT") == 0)
        return CMD_QUIT;
    return CMD_UNKNOWN;
}

/* Splits LINE in place into command word, key and value. */
static void parse_request(char *line, struct request *req)
{
    char *p = line;

    while (is_blank((unsigned char)*p))
        p++;
    req->key = NULL;
    req->value = NULL;
    line = p;
    while (*p && !is_blank((unsigned char)*p))
        p++;
    if (*p)
        *p++ = '\0';
    req->cmd = lookup_command(line);
    while (is_blank((unsigned char)*p))
        p++;
    if (!*p)
        return;
    req->key = p;
    while (*p && !is_blank((unsigned char)*p))
        p++;
    if (*p) {
        *p++ = '\0';
        req->value = p;
    }
}

/* Checks that the command got a key; otherwise answers the client and returns 0. */
static int need_key(int fd, const struct request *req)
{
    if (!req->key) {
        send_str(fd, "ERR wrong number of arguments");
        return 0;
    }
    return 1;
}

static int reply_status(int fd, int status)
{
    switch (status) {
    case STORE_NOMEM:
        return send_str(fd, "ERR out of memory");
    case STORE_NOT_INTEGER:
        return send_str(fd, "ERR not an integer");
    default:
        return send_str(fd, "ERR internal error");
    }
}

static int handle_set(int fd, const struct request *req)
{
    int status;

    if (!need_key(fd, req))
        return 0;
    if (!req->value)
        return send_str(fd, "ERR wrong number of arguments");
    status = store_set(req->key, req->value, strlen(req->value));
    if (status != STORE_OK)
        return reply_status(fd, status);
    return send_str(fd, "OK");
}

static int handle_get(int fd, const struct request *req)
{
    char *value;
    size_t len;
    int status, err;

    if (!need_key(fd, req))
        return 0;
    status = store_get(req->key, &value, &len);
    if (status == STORE_MISSING)
        return send_str(fd, "NIL");
    if (status != STORE_OK)
        return reply_status(fd, status);
    err = send_line(fd, value, len);
    free(value);
    return err;
}

static int handle_incr(int fd, const struct request *req)
{
    char buf[32];
    long long n;
    int status;

    if (!need_key(fd, req))
        return 0;
    status = store_incr(req->key, &n);
    if (status != STORE_OK)
        return reply_status(fd, status);
    snprintf(buf, sizeof(buf), "%lld", n);
    return send_str(fd, buf);
}

static int handle_del(int fd, const struct request *req)
{
    if (!need_key(fd, req))
        return 0;
    return send_str(fd, store_del(req->key) ? "1" : "0");
}

/* The only user of KVD_VERSION. */
static int handle_version(int fd)
{
    return send_str(fd, KVD_VERSION);
}

static int handle_stats(int fd)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%lu", stats_commands());
    return send_str(fd, buf);
}

/*
 * Runs one parsed command. Returns 1 when the connection should close.
 * The dense switch compiles to a jump table in .rodata.protocol_dispatch.
 */
__attribute__((noinline)) int protocol_dispatch(int fd, const struct request *req)
{
    switch (req->cmd) {
    case CMD_PING:
        send_str(fd, "PONG");
        break;
    case CMD_SET:
        handle_set(fd, req);
        break;
    case CMD_GET:
        handle_get(fd, req);
        break;
    case CMD_INCR:
        handle_incr(fd, req);
        break;
    case CMD_DEL:
        handle_del(fd, req);
        break;
    case CMD_VERSION:
        handle_version(fd);
        break;
    case CMD_STATS:
        handle_stats(fd);
        break;
    case CMD_QUIT:
        send_str(fd, "BYE");
        return 1;
    case CMD_UNKNOWN:
    default:
        send_str(fd, "ERR unknown command");
        break;
    }
    return 0;
}

int protocol_handle_line(int fd, char *line)
{
    struct request req;

    stats_command_served();
    parse_request(line, &req);
    return protocol_dispatch(fd, &req);
}
