#include <stdio.h>

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
    int sum = 0;
    for (int key = 10; key < 40; key += 10)
        sum += lookup_pair(key) + lookup(key);
    printf("%d\n", sum);
    return 0;
}
