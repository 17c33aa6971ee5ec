/* f() on a worker thread, interrupted by a signal whose handler runs on an alternate stack.
 *
 * stdin: "enter" makes the worker call f(1), which raises SIGUSR1; the handler
 * (SA_ONSTACK, on an mmap'd alternate stack) prints where it runs and blocks
 * in read() until "release"; then f returns and the worker prints its result.
 * "call" makes the worker call f(0) and print the result.  While the handler
 * blocks, the worker's stack pointer is in the alternate stack and f's frame
 * is only on the normal stack, below the kernel's signal frame.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ALT_SIZE (64 * 1024)
#define PAGE 4096

static int command_pipe[2];
static int release_pipe[2];
static volatile int handled;

static void on_signal(int signo) {
    stack_t now;
    char byte;
    const char *line;
    (void)signo;
    sigaltstack(NULL, &now);
    line = (now.ss_flags & SS_ONSTACK) ? "handler on altstack\n" : "handler not on altstack\n";
    if (write(1, line, strlen(line)) < 0) return;
    while (read(release_pipe[0], &byte, 1) != 1) {
    }
    handled++;
}

__attribute__((noinline)) const char *f(int interrupt) {
    if (interrupt) raise(SIGUSR1);
    return "f old";
}

static void *worker(void *arg) {
    stack_t alternate;
    char *memory = mmap(NULL, ALT_SIZE + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    (void)arg;
    if (memory == MAP_FAILED || mprotect(memory + ALT_SIZE, PAGE, PROT_NONE) != 0) return NULL;
    alternate.ss_sp = memory;  /* a guard page above: the mapping ends with the alternate stack */
    alternate.ss_size = ALT_SIZE;
    alternate.ss_flags = 0;
    if (sigaltstack(&alternate, NULL) != 0) return NULL;
    for (;;) {
        char command;
        if (read(command_pipe[0], &command, 1) != 1) return NULL;
        printf("%s\n", f(command == 'e'));
        fflush(stdout);
    }
}

int main(void) {
    struct sigaction action;
    pthread_t thread;
    char line[64];
    if (pipe(command_pipe) != 0 || pipe(release_pipe) != 0) return 1;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGUSR1, &action, NULL) != 0) return 1;
    pthread_create(&thread, NULL, worker, NULL);
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        const char *to_worker = strncmp(line, "enter", 5) == 0 ? "e" : strncmp(line, "call", 4) == 0 ? "c" : NULL;
        if (to_worker != NULL && write(command_pipe[1], to_worker, 1) != 1) return 1;
        if (strncmp(line, "release", 7) == 0 && write(release_pipe[1], "r", 1) != 1) return 1;
    }
    return 0;
}
