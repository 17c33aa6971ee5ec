#include <stdio.h>
#include <stdlib.h>

/* Registration records in the style of haproxy's INITCALL(): a static
 * record points at a file-scope compound literal (__compound_literal.N),
 * and no function refers to the literal itself. */
struct handler {
	const char *name;
	int (*run)(int);
};

__attribute__((noinline)) static int double_it(int x) { return 2 * x; }
__attribute__((noinline)) static int square_it(int x) { return x * x + 1; }

static struct handler *registered_double = &(struct handler){ "double", double_it };
static struct handler *registered_square = &(struct handler){ "square", square_it };

__attribute__((noinline)) int run_all(int x)
{
	return registered_double->run(x) + registered_square->run(x);
}

int main(void)
{
	char line[256];
	while (fgets(line, sizeof line, stdin)) {
		int x = atoi(line);
		printf("%s+%s(%d) = %d\n", registered_double->name, registered_square->name, x, run_all(x));
		fflush(stdout);
	}
	return 0;
}
