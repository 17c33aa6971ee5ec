#include <stdio.h>
#include <string.h>

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

int main(void)
{
	return process(20) == 41 && strcmp(last_point, "close_stream: close") == 0 ? 0 : 1;
}
