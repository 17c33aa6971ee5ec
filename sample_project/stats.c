/* Counters shown by the STATS command. */
#include "kvd.h"

unsigned long commands_served;

/* Called once per command line, from every connection thread. */
void stats_command_served(void)
{
    __atomic_fetch_add(&commands_served, 1, __ATOMIC_RELAXED);
}

unsigned long stats_commands(void)
{
    return __atomic_load_n(&commands_served, __ATOMIC_RELAXED);
}
