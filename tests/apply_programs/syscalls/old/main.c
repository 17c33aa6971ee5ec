/* Threads blocked in restartable system calls; any EINTR is printed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int pipe_fds[2];
static int listener;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;

static void report(const char *call) {
    printf("EINTR %s\n", call);
    fflush(stdout);
}

__attribute__((noinline)) const char *banner(void) { return "syscalls v1"; }

static void *reader(void *arg) {
    char byte;
    (void)arg;
    for (;;) {
        ssize_t got = read(pipe_fds[0], &byte, 1);
        if (got < 0 && errno == EINTR) report("read");
        if (got == 0) return NULL;
    }
}

static void *acceptor(void *arg) {
    (void)arg;
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0 && errno == EINTR) report("accept");
        if (fd >= 0) close(fd);
    }
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec rest = {3600, 0};
        if (nanosleep(&rest, &rest) < 0 && errno == EINTR) report("nanosleep");
    }
    return NULL;
}

static void *waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        int rc = pthread_cond_wait(&never, &lock);
        if (rc == EINTR) report("futex");
    }
    return NULL;
}

int main(void) {
    struct sockaddr_in address;
    pthread_t threads[4];
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (pipe(pipe_fds) != 0) return 1;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 4) != 0)
        return 1;
    pthread_create(&threads[0], NULL, reader, NULL);
    pthread_create(&threads[1], NULL, acceptor, NULL);
    pthread_create(&threads[2], NULL, sleeper, NULL);
    pthread_create(&threads[3], NULL, waiter, NULL);
    printf("ready %s\n", banner());
    fflush(stdout);
    for (;;) {
        char line[64];
        if (fgets(line, sizeof line, stdin) == NULL) break;
        if (strncmp(line, "banner", 6) == 0) {
            printf("%s\n", banner());
            fflush(stdout);
        }
    }
    return 0;
}
