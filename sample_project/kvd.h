/* kvd: a small in-memory key/value server, the sample target for buildhook. */
#ifndef KVD_H
#define KVD_H

#define KVD_VERSION "kvd 1.0"

#include <pthread.h>
#include <stddef.h>

/* Keys are stored inline in each entry, NUL included. */
#define KEY_MAX 32
#define NBUCKETS 256
/* Longest command line accepted, without its newline. */
#define LINE_MAX_LEN 8192

/* Results of the store_* operations. */
enum store_status {
    STORE_OK = 0,
    STORE_MISSING,
    STORE_NOMEM,
    STORE_NOT_INTEGER,
};

struct entry;

/* store.c: the hash table and the lock that guards it. */
extern struct entry *table[NBUCKETS];
extern pthread_mutex_t table_lock;
int store_set(const char *key, const char *value, size_t value_len);
int store_get(const char *key, char **value, size_t *value_len);
int store_incr(const char *key, long long *result);
int store_del(const char *key);

/* stats.c */
extern unsigned long commands_served;
void stats_command_served(void);
unsigned long stats_commands(void);

/* log.c */
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* protocol.c: handles one line without its newline; nonzero closes the connection. */
int protocol_handle_line(int fd, char *line);

/* server.c */
int send_line(int fd, const char *data, size_t len);
void server_run(int listen_fd) __attribute__((noreturn));

#endif
