/*
 * The server's event loop: one io_uring drives accept, recv, send, signals and timers, and
 * wires the pure modules (frame, bcast, conn) to it. A loop owns everything it uses, so several
 * (one per core, SO_REUSEPORT) can come later without a rewrite.
 */
#ifndef RINGCAST_LOOP_H
#define RINGCAST_LOOP_H

#include <stddef.h>

#include "ringcast/opts.h"

struct loop;

/**
 * Probe the kernel, bind the listener, set up the ring and the log, and print the start line.
 * @o must outlive the loop. Returns NULL with a one-line reason in @err; *@exit_code is then
 * the process exit status to use (1).
 */
struct loop *loop_create(const struct opts *o, char *err, size_t errlen);

/** Serve until SIGINT/SIGTERM and the drain that follows. Returns the exit status. */
int loop_run(struct loop *l);

/** Close everything the loop owns. Safe on NULL. */
void loop_destroy(struct loop *l);

#endif
