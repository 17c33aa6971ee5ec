/* The connection limit: a constant in this release. */
const int max_connections = 100;
