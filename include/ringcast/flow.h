/*
 * Flow control: who may slow the publishers. Pure: no I/O.
 *
 * A publisher is read only while at least one receiver of its frames is within the pace window
 * of the log head. Its frames' receivers are every receiving client but itself (with echo, itself
 * too), so the leading receiver is the most advanced one, or the second when the most advanced is
 * the publisher itself: tracking the two most advanced is enough. Nothing else pauses publishers:
 * a reader that is slow, stops, trickles or reconnects is never the leader while another keeps
 * up, so it cannot make anyone wait; it falls behind and meets the slow policy at --max-queue.
 * When every receiver is behind, publishers wait (TCP pushes back on them) and nobody is cut.
 *
 * Positions are in log units (bcast_units_at): a receiver's reach is the units before its cursor,
 * and it only grows while the receiver stays.
 */
#ifndef RINGCAST_FLOW_H
#define RINGCAST_FLOW_H

#include <stdbool.h>
#include <stdint.h>

#define FLOW_NONE UINT32_MAX /* no slot; as an origin: every receiver counts (echo) */

struct flow_lead {
    uint32_t slot;
    uint64_t reach;
};

struct flow {
    /* private */
    struct flow_lead top[2]; /* top[0] the most advanced; slot FLOW_NONE when empty */
    bool stale;              /* a leader left: rebuild (flow_reset + flow_advance) before asking */
    uint64_t pace;
};

/** Start with no receivers and a pace window of @pace units. */
void flow_init(struct flow *f, uint64_t pace);

/** Forget every receiver (then flow_advance each one that stays). */
void flow_reset(struct flow *f);

/** Receiver @slot is at @reach now (it joined, or its cursor moved). O(1). */
void flow_advance(struct flow *f, uint32_t slot, uint64_t reach);

/** Receiver @slot left or stopped receiving. O(1); may make the flow stale. */
void flow_forget(struct flow *f, uint32_t slot);

/** Whether a leader left since the last rebuild: the answers below need a rebuild first. */
static inline bool flow_stale(const struct flow *f)
{
    return f->stale;
}

/**
 * Whether @origin (FLOW_NONE: every receiver counts) may append @units more log units with the
 * head at @vhead. An append longer than the window needs only a receiver that is caught up, so
 * it can never wait forever. True when no client receives the frames: they are consumed.
 */
bool flow_may_append(const struct flow *f, uint32_t origin, uint64_t vhead, uint64_t units);

/** The reach of the leading receiver for @origin, or @vhead when there is none. */
uint64_t flow_leader_reach(const struct flow *f, uint32_t origin, uint64_t vhead);

#endif
