/* pointers: what a process keeps of a patch must outlive it.
 * "keep" stores label()'s string and describer()'s function pointer in
 * variables of the base; with a patch applied both point into the patch's
 * region. "show" prints them; "bump" counts in a variable the patch adds;
 * "fork" forks: the child bumps 100 times and reports, then the parent
 * reports its own count (the patch's data must be copy-on-write). It imports
 * makecontext, so the applier scans all its writable memory for busy words:
 * "keep"'s pointers into a patch's read-only data must not count. */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static int one(void) { return 1; }

__attribute__((noipa)) const char *label(void) { return "label-v1"; }
__attribute__((noipa)) int (*describer(void))(void) { return one; }
static volatile int no_hits;
__attribute__((noipa)) int bump(void) { return no_hits; }

static const char *kept_text = "nothing";
static int (*kept_fn)(void) = one;

int main(void) {
    char line[64];
    if (getenv("POINTERS_NEVER_SET")) {  /* imports makecontext: the applier scans all memory in the pause */
        ucontext_t context;
        getcontext(&context);
        makecontext(&context, (void (*)(void))one, 0);
    }
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "keep", 4) == 0) {
            kept_text = label();
            kept_fn = describer();
            printf("kept\n");
        } else if (strncmp(line, "show", 4) == 0) {
            printf("%s %d\n", kept_text, kept_fn());
        } else if (strncmp(line, "bump", 4) == 0) {
            printf("%d\n", bump());
        } else if (strncmp(line, "fork", 4) == 0) {
            fflush(stdout);
            pid_t child = fork();
            if (child == 0) {
                int value = 0;
                for (int i = 0; i < 100; i++) value = bump();
                printf("child %d\n", value);
                fflush(stdout);
                _exit(0);
            }
            waitpid(child, NULL, 0);
            printf("parent %d\n", bump());
        }
        fflush(stdout);
    }
    return 0;
}
