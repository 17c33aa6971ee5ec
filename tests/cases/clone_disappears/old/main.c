#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct request {
    const char *path;
    int header_len;
    int body_len;
    int wire_len;
};

/* Bytes a request takes on the wire (only reads *r: GCC passes the two
   fields instead of the pointer, in a .isra clone). */
__attribute__((noinline)) static int wire_size(const struct request *r)
{
    return r->header_len + r->body_len + 4;
}

__attribute__((noinline)) int queue_bytes(struct request *requests, int count)
{
    int total = 0;
    for (int i = 0; i < count; i++) {
        requests[i].wire_len = wire_size(&requests[i]);
        total += requests[i].wire_len;
    }
    return total;
}

/* Each line is a request of its own (header: the line, body: its number)
   between two fixed ones. */
int main(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        struct request requests[] = {
            { "/index.html", 120, 0, 0 },
            { line, (int)strlen(line), atoi(line), 0 },
            { "/health", 90, 0, 0 },
        };
        int total = queue_bytes(requests, 3);
        printf("%d (%d)\n", total, requests[1].wire_len);
        fflush(stdout);
    }
    return 0;
}
