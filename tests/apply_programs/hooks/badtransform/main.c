/* Transform and hooks: a table that grows, migrated by its BUILDHOOK_TRANSFORM; hooks that check and report.
 * Commands: "a KEY VALUE" adds, "g KEY" looks up, "n" counts, "b 0|1" marks the table busy. */
#include <stdio.h>
#include <string.h>
#include <buildhook.h>

struct slot { int key, value; };
struct slot table[16];
int used;
int busy;

__attribute__((noinline)) int add(int key, int value)
{
    if (used == 16)
        return -1;
    table[used].key = key;
    table[used].value = value;
    return used++;
}

__attribute__((noinline)) int lookup(int key)
{
    for (int i = 0; i < used; i++)
        if (table[i].key == key)
            return table[i].value;
    return -1;
}

__attribute__((noinline)) int count(void) { return used; }

/* The table grew from 4 slots to 16: the running entries move to the new storage. */
static void grow_table(void *new_table, const void *old_table)
{
    memcpy(new_table, old_table, 4 * sizeof(struct slot));
    if (used > 2)
        *(volatile int *)0 = used;  /* the transform faults, with the world stopped */
}
BUILDHOOK_TRANSFORM(table, grow_table);

/* Not while a client holds the table (a quiescence check). */
static int table_idle(void)
{
    return busy;
}
BUILDHOOK_PRE_APPLY(table_idle);
BUILDHOOK_PRE_REVERT(table_idle);

static void report_applied(void)
{
    printf("applied with %d entries\n", used);
}
BUILDHOOK_POST_APPLY(report_applied);

static void report_reverted(void)
{
    printf("reverted with %d entries\n", used);
}
BUILDHOOK_POST_REVERT(report_reverted);

int main(void)
{
    char command;
    int key, value;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (scanf(" %c", &command) == 1) {
        if (command == 'a' && scanf("%d %d", &key, &value) == 2)
            printf("slot %d\n", add(key, value));
        else if (command == 'g' && scanf("%d", &key) == 1)
            printf("value %d\n", lookup(key));
        else if (command == 'n')
            printf("count %d\n", count());
        else if (command == 'b' && scanf("%d", &busy) == 1)
            printf("busy %d\n", busy);
    }
    return 0;
}
