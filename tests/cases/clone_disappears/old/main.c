#include <stdio.h>

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

int main(void)
{
    struct request requests[] = {
        { "/index.html", 120, 0, 0 },
        { "/upload", 180, 4096, 0 },
        { "/health", 90, 0, 0 },
    };
    printf("%d\n", queue_bytes(requests, 3));
    return 0;
}
