#include <stdio.h>
#include <stdlib.h>

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

/* Handles one request: logs it. */
__attribute__((noinline)) int handle(int level)
{
	return send_log(level);
}

/* Each line is a log level: answers what handle made of it and the warnings so far. */
int main(void)
{
	char line[256];
	while (fgets(line, sizeof line, stdin)) {
		int result = handle(atoi(line));
		printf("%d %d\n", result, warned);
		fflush(stdout);
	}
	return 0;
}
