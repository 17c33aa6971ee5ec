/* Prints the part of each input line after its last '/'. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

__attribute__((noinline)) const char *base_name(const char *path, size_t length) {
    const char *slash = memrchr(path, '/', length);  /* an IFUNC the old binary never imported */
    return slash ? slash + 1 : path;
}

int main(void) {
    char line[256];
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t length = strcspn(line, "\n");
        line[length] = '\0';
        printf("%s\n", base_name(line, length));
        fflush(stdout);
    }
    return 0;
}
