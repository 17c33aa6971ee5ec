/* A coroutine on a stack-switching library with boost.context's interface
 * (../fcontext.S, a shared library the wrapper does not build), driven by a
 * scheduler thread.
 *
 * stdin: "call" makes the coroutine call f(0) and park in body() once f has
 * returned: its stack keeps, below the saved context, a stale return
 * address into f (f's 256-byte frame called g).  "enter" makes it call f(1),
 * which parks from inside g, so f is live on memory no thread's stack
 * pointer leads to ("parked"); "release" resumes it and f returns.  "finish"
 * ends the coroutine with boost.context's final jump (a tail call of
 * jump_fcontext from the context function); the next command starts a new
 * one.  "spin" makes the coroutine keep a word pointing into f in a local
 * and spin in body(), on the scheduler thread ("spinning"), until "stop"
 * (from the main thread): that thread's stack is then the coroutine's, whose
 * bottom is make_fcontext's finish.  "nest" makes the scheduler thread call
 * f(2) itself, which runs a second coroutine on an array in its own frame
 * that spins ("nested") until "stop": the thread's stack pointer is then in
 * that array, above its own context parked inside f.  The scheduler prints
 * each result.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define STACK_SIZE (256 * 1024)

typedef void *fcontext_t;
typedef struct { fcontext_t fctx; void *data; } transfer_t;
transfer_t jump_fcontext(fcontext_t to, void *data);
fcontext_t make_fcontext(void *stack_top, size_t size, void (*function)(transfer_t));

static int command_pipe[2];
static char command;
static const char *result;
static fcontext_t coroutine;   /* the coroutine's saved context, while it is parked */
static fcontext_t scheduler;   /* the scheduler's, while the coroutine runs */
static char *coroutine_stack;
static volatile int spinning;

__attribute__((noinline)) static void park(void) {
    scheduler = jump_fcontext(scheduler, NULL).fctx;
}

__attribute__((noinline)) void g(char *buffer, int stay) {
    buffer[0] = 'x';
    if (stay) park();
    __asm__ volatile("" ::: "memory");
}

static void spinner(transfer_t from) {
    printf("nested\n");
    fflush(stdout);
    while (spinning) {
    }
    jump_fcontext(from.fctx, NULL);
}

__attribute__((noinline)) static void run_nested(char *stack, size_t size) {
    spinning = 1;
    jump_fcontext(make_fcontext(stack + size, size, spinner), NULL);
}

__attribute__((noinline)) const char *f(int stay) {
    char buffer[256];
    if (stay == 2) {
        char stack[64 * 1024];
        run_nested(stack, sizeof stack);
        stay = 0;
    }
    g(buffer, stay);
    __asm__ volatile("" :: "r"(buffer) : "memory");
    return buffer[0] == 'x' ? "f new" : "f broken";
}

static void spin(void) {
    volatile uintptr_t into_f = (uintptr_t)f + 1;  /* a word inside f on this live stack */
    printf("spinning\n");
    fflush(stdout);
    while (spinning) (void)into_f;
}

static void body(transfer_t from) {
    scheduler = from.fctx;
    while (command != 'q') {
        if (command == 's') {
            spinning = 1;
            spin();
            result = "stopped";
        } else {
            result = command == 'e' ? f(1) : command == 'c' ? f(0) : "finished";
        }
        park();
    }
    result = "finished";
    jump_fcontext(scheduler, NULL);  /* the final jump: never resumed */
}

__attribute__((noinline)) static void resume(void) {
    coroutine = jump_fcontext(coroutine, NULL).fctx;
}

static void *scheduler_thread(void *arg) {
    (void)arg;
    coroutine_stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (coroutine_stack == MAP_FAILED) return NULL;
    for (;;) {
        char next;
        if (read(command_pipe[0], &next, 1) != 1) return NULL;
        if (next == 'n') {
            printf("%s\n", f(2));
            fflush(stdout);
            continue;
        }
        if (coroutine == NULL) coroutine = make_fcontext(coroutine_stack + STACK_SIZE, STACK_SIZE, body);
        command = next;
        result = NULL;
        resume();
        if (next == 'q') coroutine = NULL;
        printf("%s\n", result != NULL ? result : "parked");
        fflush(stdout);
    }
}

int main(void) {
    pthread_t thread;
    char line[64];
    if (pipe(command_pipe) != 0) return 1;
    pthread_create(&thread, NULL, scheduler_thread, NULL);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        const char *to_scheduler = strncmp(line, "enter", 5) == 0 ? "e"
                                   : strncmp(line, "release", 7) == 0 ? "r"
                                   : strncmp(line, "call", 4) == 0 ? "c"
                                   : strncmp(line, "finish", 6) == 0 ? "q"
                                   : strncmp(line, "spin", 4) == 0 ? "s"
                                   : strncmp(line, "nest", 4) == 0 ? "n" : NULL;
        if (strncmp(line, "stop", 4) == 0) spinning = 0;
        if (to_scheduler != NULL && write(command_pipe[1], to_scheduler, 1) != 1) return 1;
    }
    return 0;
}
