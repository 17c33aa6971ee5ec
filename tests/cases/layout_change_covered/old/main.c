#include <stdio.h>
#include <stdlib.h>

/* One request, on the heap only while a line is handled. */
struct request {
    int id;
    int len;
};

static int next_id;

__attribute__((noinline)) struct request *parse(int x)
{
    struct request *r = malloc(sizeof *r);
    r->id = ++next_id;
    r->len = x;
    return r;
}

__attribute__((noinline)) int render(const struct request *r)
{
    return r->id * 1000 + r->len;
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
