/* The connection limit: now adjustable at run time. */
int max_connections = 100;
