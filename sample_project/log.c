/* One-line diagnostics on stderr, numbered so interleaved threads stay readable. */
#include "kvd.h"

#include <stdarg.h>
#include <stdio.h>

void log_msg(const char *fmt, ...)
{
    /* Function-local on purpose: it lives on in the binary as a local symbol "seq.N". */
    static unsigned long seq;
    unsigned long n = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "kvd[%lu]: %s\n", n, line);
}
