/* The main thread never sleeps and keeps rewriting its stack at changing
 * depths, as an event loop does between two system calls: whatever lies
 * below its stack pointer when it is stopped is overwritten soon after. */
#include <stdio.h>

__attribute__((noinline)) const char *banner(void) { return "churn v1"; }

__attribute__((noinline)) static void fill(unsigned depth)
{
	volatile unsigned char scratch[512];
	for (unsigned i = 0; i < sizeof(scratch); i++)
		scratch[i] = 0x9c;
	if (depth > 0)
		fill(depth - 1);
	scratch[0] = scratch[1];
}

int main(void)
{
	unsigned round = 0;
	printf("ready %s\n", banner());
	fflush(stdout);
	for (;;)
		fill(round++ % 8);
}
