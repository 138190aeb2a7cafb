/* A worker: one thread, one io_uring (set up by the project's ring code, src/ring.c) and its
 * share of the connections. Its loop runs the entry actions of each phase the controller
 * announces, starts what is due (connects, sends, lazy and slow reads, churn), waits on the ring
 * until the next deadline (at a fixed rate polling it near deadlines instead, --spin-us) and
 * dispatches the completions in one batch, timing each arrival as its completion is handled. */
#ifndef FLOOD_WORKER_H
#define FLOOD_WORKER_H

#include "run.h"

/** The thread's entry point; @arg is its struct worker. Returns once the phase is PH_DONE, with
 * its histogram snapshot up to date. */
void *worker_main(void *arg);

#endif
