#include <stdio.h>
#include <stdlib.h>

struct entry {
    int key;
    int value;
    struct entry *next;
};

static struct entry *entries;

__attribute__((noinline)) void add_entry(int key, int value)
{
    struct entry *entry = malloc(sizeof *entry);
    if (!entry)
        return;
    entry->key = key;
    entry->value = value;
    entry->next = entries;
    entries = entry;
}

__attribute__((noinline)) int sum_values(void)
{
    int sum = 0;
    for (const struct entry *entry = entries; entry; entry = entry->next)
        sum += entry->value;
    return sum;
}

__attribute__((noinline)) void clear_entries(void)
{
    while (entries) {
        struct entry *next = entries->next;
        free(entries);
        entries = next;
    }
}

/* Each line is a number of entries (mod 16) to build, sum and free again: nothing stays
   on the heap from one line to the next. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int count = atoi(line) % 16;
        for (int key = 1; key <= count; key++)
            add_entry(key, key * 10);
        printf("%d\n", sum_values());
        clear_entries();
        fflush(stdout);
    }
    return 0;
}
