/* Building and taking apart one run: the message format, the workers (eventfd, buffers,
 * histograms), the connections and which worker owns each (connection i to worker i mod T, so
 * each gets its share of every role), which subscribers verify or read lazily, and the relay's
 * address. No I/O on the relay: connecting is the workers' (conn.c). */
#ifndef FLOOD_SETUP_H
#define FLOOD_SETUP_H

#include "run.h"

struct addrinfo;

/**
 * Builds @run for options @o, raising RLIMIT_NOFILE to its hard limit first. *@ai is the relay's
 * address: resolved here when NULL (the caller frees it with freeaddrinfo()). @stop is the
 * signal flag the run watches. Dies (exit 1) on failure: too few descriptors, no memory, an
 * address that does not resolve.
 */
void setup_run(struct flood *run, const struct flood_opts *o, struct addrinfo **ai,
               const volatile sig_atomic_t *stop);

/** Frees everything setup_run() and the run allocated; the workers must have been joined. */
void setup_teardown(struct flood *run);

#endif
