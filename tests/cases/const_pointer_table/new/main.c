#include <stdio.h>
#include <stdlib.h>

typedef long (*operation)(long a, long b);

__attribute__((noinline)) static long add(long a, long b) { return a + b; }
__attribute__((noinline)) static long sub(long a, long b) { return a - b; }
__attribute__((noinline)) static long mul(long a, long b) { return a * b; }

/* The opcode table: const, but it holds pointers, so in a PIE gcc puts it in .data.rel.ro. */
static operation const operations[4] = { add, sub, mul, sub };

__attribute__((noinline)) long run_op(int opcode, long a, long b)
{
    return operations[opcode & 3](a, b);
}

/* The opcode of the next request. */
static int opcode;

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%ld\n", run_op(opcode++, atol(line), 3));
        fflush(stdout);
    }
    return 0;
}
