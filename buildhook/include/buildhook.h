/* buildhook.h: data changes in a hot patch (docs/data-changes.md).
 *
 * Build with   cc -I"$(buildhook include-dir)" ...
 *
 * A plain build needs nothing but this header: the macros only leave a few
 * bytes in named sections (.buildhook.*) that `buildhook diff` reads from the
 * objects, and the shadow functions are defined here (weak, hidden: one
 * table per program or library).  When the new release is simply started,
 * no hook runs and the shadow functions are an ordinary side table.
 *
 *   BUILDHOOK_PRE_APPLY(fn);     int fn(void): runs in the target before the commit; non-zero refuses
 *   BUILDHOOK_POST_APPLY(fn);    void fn(void): runs in the target after the commit
 *   BUILDHOOK_PRE_REVERT(fn);    int fn(void): non-zero refuses the revert
 *   BUILDHOOK_POST_REVERT(fn);   void fn(void)
 *   BUILDHOOK_TRANSFORM(var, fn);  void fn(void *new_var, const void *old_var): migrates var, world stopped
 *   BUILDHOOK_LAYOUT_CHANGE(tag);  the author has handled every live instance of struct tag
 *
 * The marker format (read by buildhook/diff/markers.py; keep the two alike):
 *   .buildhook.pre_apply, .buildhook.post_apply, .buildhook.pre_revert, .buildhook.post_revert:
 *       8-byte function pointers;
 *   .buildhook.transform: pairs of 8-byte pointers (the variable, the function);
 *   .buildhook.layout_change: NUL-terminated tags ("struct conn", "union u").
 */
#ifndef BUILDHOOK_H
#define BUILDHOOK_H

#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BUILDHOOK__JOIN2(a, b) a##b
#define BUILDHOOK__JOIN(a, b) BUILDHOOK__JOIN2(a, b)
#define BUILDHOOK__MARKER(kind) \
    __attribute__((used, section(".buildhook." #kind), aligned(8))) BUILDHOOK__JOIN(buildhook__##kind##_, __LINE__)

#define BUILDHOOK_PRE_APPLY(fn) static int (*const BUILDHOOK__MARKER(pre_apply))(void) = (fn)
#define BUILDHOOK_POST_APPLY(fn) static void (*const BUILDHOOK__MARKER(post_apply))(void) = (fn)
#define BUILDHOOK_PRE_REVERT(fn) static int (*const BUILDHOOK__MARKER(pre_revert))(void) = (fn)
#define BUILDHOOK_POST_REVERT(fn) static void (*const BUILDHOOK__MARKER(post_revert))(void) = (fn)

struct buildhook__transform {
    const void *variable;
    void (*function)(void *new_var, const void *old_var);
};
#define BUILDHOOK_TRANSFORM(var, fn) \
    static const struct buildhook__transform BUILDHOOK__MARKER(transform) = { &(var), (fn) }

#define BUILDHOOK_LAYOUT_CHANGE(tag) \
    static const char BUILDHOOK__MARKER(layout_change)[] = #tag

/* -- shadow variables: new fields for existing objects (kpatch's idiom) ------------------
 *
 * A table keyed by (object address, id).  A patch carries it as a new variable
 * (buildhook__shadow_table), which a replacing cumulative patch keeps; revert
 * frees every entry (buildhook__shadow_release runs after the revert).  Thread-
 * safe (a spin lock); not async-signal-safe (malloc). */

#define BUILDHOOK__SHADOW_BUCKETS 1024
#define BUILDHOOK__SHADOW_VERSION 1UL

struct buildhook__shadow_entry {
    struct buildhook__shadow_entry *next;
    const void *object;
    unsigned long id;
    unsigned long size;
    /* the zeroed field follows, 16-byte aligned (malloc's alignment, 32-byte header) */
};

struct buildhook__shadow_table {
    unsigned long version;
    int lock;
    struct buildhook__shadow_entry *buckets[BUILDHOOK__SHADOW_BUCKETS];
};

__attribute__((weak, visibility("hidden"))) struct buildhook__shadow_table buildhook__shadow_table;

static inline unsigned long buildhook__shadow_bucket(const void *object, unsigned long id)
{
    unsigned long key = (unsigned long)object ^ (id * 0x9E3779B97F4A7C15UL);
    return (key ^ (key >> 29)) % BUILDHOOK__SHADOW_BUCKETS;
}

static inline void buildhook__shadow_lock(struct buildhook__shadow_table *table)
{
    while (__atomic_exchange_n(&table->lock, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
    table->version = BUILDHOOK__SHADOW_VERSION;
}

static inline void buildhook__shadow_unlock(struct buildhook__shadow_table *table)
{
    __atomic_store_n(&table->lock, 0, __ATOMIC_RELEASE);
}

static inline struct buildhook__shadow_entry **
buildhook__shadow_find(struct buildhook__shadow_table *table, const void *object, unsigned long id)
{
    struct buildhook__shadow_entry **link = &table->buckets[buildhook__shadow_bucket(object, id)];
    while (*link && ((*link)->object != object || (*link)->id != id))
        link = &(*link)->next;
    return link;
}

/* The field *id* of *obj*, or NULL if it has none. */
__attribute__((weak, visibility("hidden"), noinline))
void *buildhook_shadow_get(const void *obj, unsigned long id)
{
    struct buildhook__shadow_table *table = &buildhook__shadow_table;
    buildhook__shadow_lock(table);
    struct buildhook__shadow_entry *entry = *buildhook__shadow_find(table, obj, id);
    buildhook__shadow_unlock(table);
    return entry ? (void *)(entry + 1) : NULL;
}

/* A zeroed field *id* of *size* bytes for *obj* (the existing one if it has it already); NULL if out of memory. */
__attribute__((weak, visibility("hidden"), noinline))
void *buildhook_shadow_alloc(const void *obj, unsigned long id, unsigned long size)
{
    struct buildhook__shadow_table *table = &buildhook__shadow_table;
    struct buildhook__shadow_entry *fresh = (struct buildhook__shadow_entry *)calloc(1, sizeof *fresh + size);
    buildhook__shadow_lock(table);
    struct buildhook__shadow_entry **link = buildhook__shadow_find(table, obj, id);
    struct buildhook__shadow_entry *entry = *link;
    if (!entry && fresh) {
        fresh->object = obj;
        fresh->id = id;
        fresh->size = size;
        *link = entry = fresh;
        fresh = NULL;
    }
    buildhook__shadow_unlock(table);
    free(fresh);
    return entry ? (void *)(entry + 1) : NULL;
}

/* Drop the field *id* of *obj* (when the object is freed). */
__attribute__((weak, visibility("hidden"), noinline))
void buildhook_shadow_free(const void *obj, unsigned long id)
{
    struct buildhook__shadow_table *table = &buildhook__shadow_table;
    buildhook__shadow_lock(table);
    struct buildhook__shadow_entry **link = buildhook__shadow_find(table, obj, id);
    struct buildhook__shadow_entry *entry = *link;
    if (entry)
        *link = entry->next;
    buildhook__shadow_unlock(table);
    free(entry);
}

/* Every field of every object: what revert runs after the old code is back (the patch's table goes). */
__attribute__((weak, visibility("hidden"), noinline))
void buildhook__shadow_release(void)
{
    struct buildhook__shadow_table *table = &buildhook__shadow_table;
    buildhook__shadow_lock(table);
    for (unsigned long bucket = 0; bucket < BUILDHOOK__SHADOW_BUCKETS; bucket++) {
        struct buildhook__shadow_entry *entry = table->buckets[bucket];
        table->buckets[bucket] = NULL;
        while (entry) {
            struct buildhook__shadow_entry *next = entry->next;
            free(entry);
            entry = next;
        }
    }
    buildhook__shadow_unlock(table);
}

#ifdef __cplusplus
}
#endif

#endif /* BUILDHOOK_H */
