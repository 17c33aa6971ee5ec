#include <stdio.h>
#include <string.h>

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
	return run_all(3) == 16 && strcmp(registered_square->name, "square") == 0 ? 0 : 1;
}
