/* A coroutine (makecontext/swapcontext) parked inside f() on an mmap'd stack.
 *
 * stdin: "enter" makes the worker thread start a coroutine that calls f(1),
 * which swaps back to the worker from inside f ("parked"); the worker then
 * blocks reading its next command.  "release" resumes the coroutine: f
 * returns, the coroutine ends, its stack is unmapped and its saved context
 * cleared, and the worker prints f's result.  "call" makes the worker call
 * f(0), which returns at once, and print the result.  While parked, f's frame
 * is on memory no thread's stack pointer points into.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define STACK_SIZE (256 * 1024)

static int command_pipe[2];
static ucontext_t scheduler;
static ucontext_t coroutine;
static char *coroutine_stack;
static const char *result;

__attribute__((noinline)) const char *f(int park) {
    if (park) swapcontext(&coroutine, &scheduler);
    return "f old";
}

static void body(void) { result = f(1); }

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        char command;
        if (read(command_pipe[0], &command, 1) != 1) return NULL;
        if (command == 'e' && coroutine_stack == NULL) {
            coroutine_stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (coroutine_stack == MAP_FAILED || getcontext(&coroutine) != 0) return NULL;
            coroutine.uc_stack.ss_sp = coroutine_stack;
            coroutine.uc_stack.ss_size = STACK_SIZE;
            coroutine.uc_link = &scheduler;
            makecontext(&coroutine, body, 0);
            swapcontext(&scheduler, &coroutine);
            printf("parked\n");
        } else if (command == 'r' && coroutine_stack != NULL) {
            swapcontext(&scheduler, &coroutine);
            munmap(coroutine_stack, STACK_SIZE);
            coroutine_stack = NULL;
            memset(&coroutine, 0, sizeof coroutine);
            printf("%s\n", result);
        } else if (command == 'c') {
            printf("%s\n", f(0));
        }
        fflush(stdout);
    }
}

int main(void) {
    pthread_t thread;
    char line[64];
    if (pipe(command_pipe) != 0) return 1;
    pthread_create(&thread, NULL, worker, NULL);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        const char *to_worker = strncmp(line, "enter", 5) == 0 ? "e"
                                : strncmp(line, "release", 7) == 0 ? "r"
                                : strncmp(line, "call", 4) == 0 ? "c" : NULL;
        if (to_worker != NULL && write(command_pipe[1], to_worker, 1) != 1) return 1;
    }
    return 0;
}
