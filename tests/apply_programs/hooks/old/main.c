/* Transform and hooks: a table that grows, migrated by its BUILDHOOK_TRANSFORM; hooks that check and report.
 * Commands: "a KEY VALUE" adds, "g KEY" looks up, "n" counts, "b 0|1" marks the table busy. */
#include <stdio.h>
#include <string.h>

struct slot { int key, value; };
struct slot table[4];
int used;
int busy;

__attribute__((noinline)) int add(int key, int value)
{
    if (used == 4)
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
