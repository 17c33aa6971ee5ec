#include <stdio.h>
#include <stdlib.h>

/* A one-entry cache in front of an expensive computation. */
static int cached_key = -1, cached_value;
static int misses;

/* The hit path is tiny and likely: GCC inlines it into the callers and
   moves the miss path into lookup.part.0 (partial inlining). */
int lookup(int key)
{
    if (__builtin_expect(key == cached_key, 1))
        return cached_value;
    int value = 1;
    for (int i = 0; i < key; i++) {
        value = value * 7 + i;
        if (value > 100000)
            value %= 9973;
    }
    misses++;
    printf("miss %d: computed %d (%d misses)\n", key, value, misses);
    cached_key = key;
    cached_value = value;
    return value;
}

__attribute__((noinline)) int lookup_pair(int key)
{
    return lookup(key) + lookup(key);
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int key = atoi(line);
        printf("%d\n", lookup_pair(key) + lookup(key));
        fflush(stdout);
    }
    return 0;
}
