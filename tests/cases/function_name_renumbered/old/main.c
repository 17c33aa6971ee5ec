#include <stdio.h>
#include <stdlib.h>

/* A trace helper in the style of haproxy's TRACE()/BUG_ON(): it records the
 * name of the function it is written in, so each such function gets its own
 * read-only static local __FUNCTION__.N. */
#define TRACE(msg) trace_point(__FUNCTION__, (msg))

static char last_point[64];

__attribute__((noinline)) static void trace_point(const char *where, const char *msg)
{
	snprintf(last_point, sizeof(last_point), "%s: %s", where, msg);
}

static inline int open_stream(int id)
{
	TRACE("open");
	return id * 2;
}

static inline int close_stream(int id)
{
	TRACE("close");
	return id + 1;
}

/* Both helpers are inlined here: process() refers to two __FUNCTION__.N. */
__attribute__((noinline)) int process(int id)
{
	return close_stream(open_stream(id));
}

/* Answers one line: the stream with that id goes through process(). */
__attribute__((noinline)) void handle(const char *line)
{
	int id = process(atoi(line));
	printf("%d %s\n", id, last_point);
}

int main(void)
{
	char line[256];
	while (fgets(line, sizeof line, stdin)) {
		handle(line);
		fflush(stdout);
	}
	return 0;
}
