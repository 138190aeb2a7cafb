/*
 * The server's event loop: one io_uring drives accept, recv, send, signals and timers, and
 * wires the pure modules (ingest, bcast, fanout, flow) to it. A loop owns everything it uses, so
 * several (one per core, SO_REUSEPORT) can come later without a rewrite. Process-wide set-up
 * (signal mask, descriptor limit, systemd's sockets and readiness) is the caller's: process.h.
 */
#ifndef RINGCAST_LOOP_H
#define RINGCAST_LOOP_H

#include <stddef.h>

#include "ringcast/netaddr.h"
#include "ringcast/opts.h"

struct loop;

/* Listening sockets handed over by the caller (systemd socket activation), -1 for none. */
struct loop_sockets {
    int relay;
    int metrics;
};

/**
 * Probe the kernel, set up the ring and the log, take or bind the listeners, and print the start
 * line. @o must outlive the loop; the loop owns the sockets in @passed from now on, even on
 * failure. The address it listens on goes to @bound. Returns NULL with a one-line reason in @err.
 */
struct loop *loop_create(const struct opts *o, const struct loop_sockets *passed,
                         union netaddr *bound, char *err, size_t errlen);

/** Serve until SIGINT/SIGTERM and the drain that follows. Returns the exit status. */
int loop_run(struct loop *l);

/** Close everything the loop owns. Safe on NULL. */
void loop_destroy(struct loop *l);

#endif
