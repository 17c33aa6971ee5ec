#include <stdio.h>
#include <stdlib.h>

/* A small cache of the last keys seen: 4 slots, filled round robin. */
struct slot { int key, hits; };
struct slot cache[4];
unsigned next_slot;
/* The slot to look at first: starts at the first one. */
struct slot *hint = cache;

__attribute__((noinline)) int touch(int key)
{
    if (hint->hits && hint->key == key)
        return ++hint->hits;
    for (unsigned i = 0; i < sizeof cache / sizeof *cache; i++)
        if (cache[i].hits && cache[i].key == key)
            return ++cache[i].hits;
    cache[next_slot].key = key;
    cache[next_slot].hits = 1;
    hint = &cache[next_slot];
    next_slot = (next_slot + 1) % (sizeof cache / sizeof *cache);
    return 1;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", touch(atoi(line) % 7));
        fflush(stdout);
    }
    return 0;
}
