#include <stdio.h>
#include <stdlib.h>
#include <buildhook.h>

/* One request, on the heap only while a line is handled. */
struct request {
    int id;
    int negative;  /* new, in the middle: len moves */
    int len;
};

/* No request lives between two lines, so none of the old layout can be met: the author says so. */
BUILDHOOK_LAYOUT_CHANGE(struct request);

static int next_id;

__attribute__((noinline)) struct request *parse(int x)
{
    struct request *r = malloc(sizeof *r);
    r->id = ++next_id;
    r->negative = x < 0;
    r->len = r->negative ? -x : x;
    return r;
}

__attribute__((noinline)) int render(const struct request *r)
{
    return (r->negative ? -1 : 1) * (r->id * 1000 + r->len);
}

__attribute__((noinline)) void release(struct request *r)
{
    free(r);
}

__attribute__((noinline)) int handle(int x)
{
    struct request *r = parse(x);
    int answer = render(r);
    release(r);
    return answer;
}

int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("%d\n", handle(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
