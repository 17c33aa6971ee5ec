#include <stdio.h>

struct request {
    const char *path;
    int header_len;
    int body_len;
    int wire_len;
};

/* Bytes a request takes on the wire; now records them itself (a store
   through r: the .isra clone is gone). */
__attribute__((noinline)) static int wire_size(struct request *r)
{
    r->wire_len = r->header_len + r->body_len + 4;
    return r->wire_len;
}

__attribute__((noinline)) int queue_bytes(struct request *requests, int count)
{
    int total = 0;
    for (int i = 0; i < count; i++) {
        total += wire_size(&requests[i]);
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
