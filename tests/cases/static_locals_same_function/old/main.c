#include <stdio.h>

/* A report-once macro in the style of haproxy's log.c: each use has its own
 * writable static flag, so one function can own several once.N. */
#define WARN_ONCE(msg) do { static char once; if (!once) { once = 1; warned++; (void)(msg); } } while (0)

static int warned;

__attribute__((noinline)) int send_log(int level)
{
	if (level > 3)
		WARN_ONCE("level too high");
	if (level < 0)
		WARN_ONCE("level negative");
	return level;
}

int main(void)
{
	int sum = send_log(5) + send_log(6) + send_log(-1);
	return sum == 10 && warned == 2 ? 0 : 1;
}
