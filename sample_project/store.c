/* The key/value store: a chained hash table guarded by one mutex. */
#include "kvd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    char key[KEY_MAX];
    char *value;
    size_t value_len;
    struct entry *next;
};

struct entry *table[NBUCKETS];
pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

/* Whitespace tolerated around an integer value (same name as in protocol.c on purpose). */
static __attribute__((noinline)) int is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Copies a key into its fixed-size slot; longer keys keep their first KEY_MAX-1 bytes. */
static void key_copy(char dst[KEY_MAX], const char *src)
{
    size_t n = strnlen(src, KEY_MAX - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* FNV-1a over the stored form of the key. */
static unsigned int hash_key(const char *key)
{
    unsigned int h = 2166136261u;

    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % NBUCKETS;
}

/* Returns the link that points at KEY's entry, or at the bucket's terminating NULL. */
static struct entry **find_entry(const char *key)
{
    struct entry **link = &table[hash_key(key)];

    while (*link && strcmp((*link)->key, key) != 0)
        link = &(*link)->next;
    return link;
}

static char *dup_value(const char *value, size_t len)
{
    char *copy = malloc(len + 1);

    if (copy) {
        memcpy(copy, value, len);
        copy[len] = '\0';
    }
    return copy;
}

/* Puts the heap buffer COPY under the stored key K; the caller holds table_lock. */
static int set_locked(const char *k, char *copy, size_t len)
{
    struct entry **link = find_entry(k);

    if (!*link) {
        struct entry *e = calloc(1, sizeof(*e));

        if (!e) {
            free(copy);
            return STORE_NOMEM;
        }
        memcpy(e->key, k, KEY_MAX);
        *link = e;
    }
    free((*link)->value);
    (*link)->value = copy;
    (*link)->value_len = len;
    return STORE_OK;
}

/* Stores VALUE under KEY, replacing any previous value. */
int store_set(const char *key, const char *value, size_t value_len)
{
    char k[KEY_MAX];
    char *copy = dup_value(value, value_len);
    int status;

    if (!copy)
        return STORE_NOMEM;
    key_copy(k, key);
    pthread_mutex_lock(&table_lock);
    status = set_locked(k, copy, value_len);
    pthread_mutex_unlock(&table_lock);
    return status;
}

/* Copies KEY's value into a new heap buffer owned by the caller. */
int store_get(const char *key, char **value, size_t *value_len)
{
    char k[KEY_MAX];
    struct entry *e;
    int status = STORE_MISSING;

    key_copy(k, key);
    pthread_mutex_lock(&table_lock);
    e = *find_entry(k);
    if (e) {
        *value = dup_value(e->value, e->value_len);
        *value_len = e->value_len;
        status = *value ? STORE_OK : STORE_NOMEM;
    }
    pthread_mutex_unlock(&table_lock);
    return status;
}

/* Parses a whole value as a decimal integer, blanks allowed around it. */
static int parse_integer(const char *s, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(s, &end, 10);
    if (end == s || errno == ERANGE)
        return -1;
    while (is_blank((unsigned char)*end))
        end++;
    return *end ? -1 : 0;
}

/* Adds one to KEY's integer value; a missing key counts as 0. */
int store_incr(const char *key, long long *result)
{
    char k[KEY_MAX];
    char buf[32];
    long long n = 0;
    int status = STORE_NOT_INTEGER;
    struct entry *e;

    key_copy(k, key);
    pthread_mutex_lock(&table_lock);
    e = *find_entry(k);
    if (!e || (parse_integer(e->value, &n) == 0 && n < LLONG_MAX)) {
        int len = snprintf(buf, sizeof(buf), "%lld", ++n);
        char *copy = dup_value(buf, (size_t)len);

        status = copy ? set_locked(k, copy, (size_t)len) : STORE_NOMEM;
        *result = n;
    }
    pthread_mutex_unlock(&table_lock);
    return status;
}

/* Removes KEY; returns 1 when it existed, 0 otherwise. */
int store_del(const char *key)
{
    char k[KEY_MAX];
    struct entry **link, *e;

    key_copy(k, key);
    pthread_mutex_lock(&table_lock);
    link = find_entry(k);
    e = *link;
    if (e)
        *link = e->next;
    pthread_mutex_unlock(&table_lock);
    if (!e)
        return 0;
    free(e->value);
    free(e);
    return 1;
}
