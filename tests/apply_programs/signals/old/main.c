/* signals: the applier must not lose, merge or change a signal.
 * The main thread waits in sigsuspend (SIGUSR1 blocked otherwise) and is the
 * one the applier runs its calls on; a thread waits in pause() for SIGUSR2;
 * a thread takes queued real-time signals (SIGRTMIN, values 1, 2, 3, ... in
 * order); a thread sleeps 200 ms at a time and measures how long each sleep
 * really took; a thread serves stdin: "banner" prints banner() (the patched
 * function), "report" prints what arrived. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((noipa)) const char *banner(void) { return "signals v1"; }

static volatile sig_atomic_t usr1, usr2, rt, rt_disorder, last_value;
static volatile long worst_sleep_error_us;
static volatile int eintr_seen;

static void on_usr1(int sig) { (void)sig; usr1++; }
static void on_usr2(int sig) { (void)sig; usr2++; }
static void on_rt(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)context;
    if (info->si_value.sival_int != last_value + 1) rt_disorder++;
    last_value = info->si_value.sival_int;
    rt++;
}

static void block(int sig) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void unblock(int sig) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *pauser(void *unused) {
    unblock(SIGUSR2);
    for (;;) pause();
    return unused;
}

static void *rt_taker(void *unused) {
    unblock(SIGRTMIN);
    for (;;) pause();
    return unused;
}

static void *sleeper(void *unused) {
    for (;;) {
        struct timespec delay = {0, 200 * 1000 * 1000};
        double start = now();
        if (nanosleep(&delay, NULL) < 0 && errno == EINTR) eintr_seen++;
        long error = (long)((now() - start - 0.2) * 1e6);
        if (error < 0) error = -error;
        if (error > worst_sleep_error_us) worst_sleep_error_us = error;
    }
    return unused;
}

static void *server(void *unused) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "banner", 6) == 0)
            printf("%s\n", banner());
        else
            printf("usr1=%d usr2=%d rt=%d disorder=%d eintr=%d worst_sleep_error_us=%ld\n", (int)usr1, (int)usr2,
                   (int)rt, (int)rt_disorder, eintr_seen, worst_sleep_error_us);
        fflush(stdout);
    }
    _exit(0);
    return unused;
}

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_usr1;
    sigaction(SIGUSR1, &action, NULL);
    action.sa_handler = on_usr2;
    sigaction(SIGUSR2, &action, NULL);
    action.sa_handler = NULL;
    action.sa_sigaction = on_rt;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN, &action, NULL);
    block(SIGUSR1);  /* inherited by every thread: each unblocks only its own */
    block(SIGUSR2);
    block(SIGRTMIN);
    pthread_t thread;
    pthread_create(&thread, NULL, pauser, NULL);
    pthread_create(&thread, NULL, rt_taker, NULL);
    pthread_create(&thread, NULL, sleeper, NULL);
    pthread_create(&thread, NULL, server, NULL);
    printf("ready\n");
    fflush(stdout);
    sigset_t wait_for_usr1;
    sigfillset(&wait_for_usr1);
    sigdelset(&wait_for_usr1, SIGUSR1);
    for (;;)
        if (sigsuspend(&wait_for_usr1) != -1 || errno != EINTR) eintr_seen += 1000;  /* must return EINTR */
}
