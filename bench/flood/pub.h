/* Publishers: one send in flight each; at full speed 256 KiB batches of messages stamped just
 * before the send, at a fixed rate the messages due (the worker's ring timeout is the timer; how
 * late each is written goes to the worker's pub_lag histogram); the readiness messages of
 * publisher 0; replies (Redis, NATS control lines). Runs on the owning worker's thread. */
#ifndef FLOOD_PUB_H
#define FLOOD_PUB_H

#include "run.h"

/** Whether the worker's current phase carries load (warm-up, measure, drain). */
static inline bool pub_phase_loaded(const struct worker *w)
{
    return w->phase == PH_WARMUP || w->phase == PH_MEASURE || w->phase == PH_DRAIN;
}

/** Fixed rate: the intended time of publisher @c's next message. */
uint64_t pub_next_due(const struct conn *c);

/** Marks the publisher done once it has generated and sent everything of the phase. */
void pub_update_done(struct conn *c);

/** Loaded phases: starts the sends that are due on every publisher of @w. */
void pub_service(struct worker *w, uint64_t now);

/** READY: publisher 0 (when @w has it) sends the readiness message of the controller's latest
 * round, once its previous send is complete. */
void pub_ready(struct worker *w, uint64_t now);

/** A send's completion. */
void pub_on_send_cqe(struct conn *c, int res, uint64_t now);

/** Bytes a publisher received (Redis replies, NATS control lines). */
void pub_data(struct conn *c, const char *data, size_t n);

/** Start of a loaded phase at @start: counts reset, schedules spread over one period. */
void pub_reset_phase(struct worker *w, uint64_t start);

#endif
