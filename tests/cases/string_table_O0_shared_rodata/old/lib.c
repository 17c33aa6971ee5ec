#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const names_4_names[4] = { "foxtrot", "india", "echo", "golf" };

__attribute__((noinline)) const char *names_4(unsigned x)
{
    return names_4_names[(x ^ 66u) & 3];
}
