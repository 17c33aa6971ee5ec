#include <stdio.h>
#include <string.h>

#define INTERNAL __attribute__((visibility("hidden")))
INTERNAL extern int checksum_seed;
INTERNAL unsigned mix(unsigned h, unsigned c);

__attribute__((noinline)) unsigned checksum(const char *text)
{
    unsigned h = (unsigned)checksum_seed;
    for (size_t i = 0; text[i] && text[i] != '\n'; i++)
        h = mix(h ^ (h >> 7), (unsigned char)text[i]);
    return h;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%u\n", checksum(line));
        fflush(stdout);
    }
    return 0;
}
