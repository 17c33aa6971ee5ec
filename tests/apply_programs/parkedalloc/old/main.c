/* A process that switches stacks (a parked coroutine) and holds a word inside malloc in ordinary memory.
 *
 * swapcontext turns the applier's scan of all writable memory on; `stale` stands for the return
 * addresses into the allocator that any coroutine stack or heap block keeps after a call (seen on
 * pdns-recursor, whose MTasker coroutines run on heap stacks).  libgcc_s is loaded, so a patch's
 * unwind tables are registered, on a thread that must not be inside the allocator: that check
 * looks at the thread's own stacks only (a parked coroutine never is inside malloc).
 * stdin: "call" prints f().
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define STACK_SIZE (64 * 1024)

char *stale = (char *)&malloc + 16;  /* inside malloc, not its entry */
static ucontext_t scheduler, coroutine;

__attribute__((noinline)) const char *f(void) { return "f old"; }

static void body(void) { swapcontext(&coroutine, &scheduler); }

int main(void) {
    char line[64];
    if (dlopen("libgcc_s.so.1", RTLD_NOW) == NULL) return 1;
    if (getcontext(&coroutine) != 0) return 1;
    coroutine.uc_stack.ss_sp = malloc(STACK_SIZE);
    coroutine.uc_stack.ss_size = STACK_SIZE;
    coroutine.uc_link = &scheduler;
    makecontext(&coroutine, body, 0);
    swapcontext(&scheduler, &coroutine);  /* parked for good */
    printf("ready %p\n", (void *)stale);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "call", 4) == 0) printf("%s\n", f());
        fflush(stdout);
    }
    return 0;
}
