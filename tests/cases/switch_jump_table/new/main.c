#include <stdio.h>
#include <stdlib.h>

enum op { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_SHL, OP_SHR, OP_AND, OP_OR, OP_XOR };

/* One step of a tiny calculator. */
__attribute__((noinline)) long evaluate(enum op op, long a, long b)
{
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return b ? a / b : 0;
    case OP_MOD: return b ? (a % b + b) % b : 0;  /* never negative */
    case OP_SHL: return a << (b & 63);
    case OP_SHR: return a >> (b & 63);
    case OP_AND: return a & b;
    case OP_OR:  return a | b;
    case OP_XOR: return a ^ b;
    default:     return a;
    }
}

/* Each line is a start value: answers the accumulator after each of the ten operations. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        long acc = atol(line);
        for (int op = OP_ADD; op <= OP_XOR; op++) {
            acc = evaluate((enum op)op, acc, op + 3);
            printf(" %ld", acc);
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
