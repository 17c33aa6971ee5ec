/* Data migration: a histogram that grows (size), a tunable whose initial value changes (value).
 * Commands: "s MS" records a sample, "p" prints the histogram, "l" the limit, "L N" sets it,
 * "k" keeps a pointer into the histogram on the heap. */
#include <stdio.h>
#include <stdlib.h>

unsigned histogram[8];
int limit = 3;

__attribute__((noinline)) void record(unsigned ms)
{
    unsigned bucket = 0;
    while (bucket < 7 && ms >= (1u << bucket))
        bucket++;
    histogram[bucket]++;
}

__attribute__((noinline)) void print_histogram(void)
{
    for (unsigned i = 0; i < 8; i++)
        printf("%u ", histogram[i]);
    printf("\n");
}

/* Hands out a pointer into the histogram, kept on the heap: it would outlive a move. */
unsigned **kept;
__attribute__((noinline)) void keep(void)
{
    kept = malloc(sizeof *kept);
    *kept = &histogram[2];
}

__attribute__((noinline)) int get_limit(void) { return limit; }
__attribute__((noinline)) void set_limit(int value) { limit = value; }

int main(void)
{
    char command;
    int value;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (scanf(" %c", &command) == 1) {
        if (command == 's' && scanf("%d", &value) == 1) {
            record((unsigned)value);
            printf("ok\n");
        } else if (command == 'p') {
            print_histogram();
        } else if (command == 'k') {
            keep();
            printf("ok\n");
        } else if (command == 'l') {
            printf("limit %d\n", get_limit());
        } else if (command == 'L' && scanf("%d", &value) == 1) {
            set_limit(value);
            printf("ok\n");
        }
    }
    return 0;
}
