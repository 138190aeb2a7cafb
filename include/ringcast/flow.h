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
 * The pack rule: publishers also wait while the pack's pacer, the receiver nine tenths of the way
 * down from the most advanced (flow_pack_rank), is more than the pack window (a quarter of the
 * quota) behind the head, so that a reading host that serves its sockets unevenly (a saturated
 * host, a benchmark driver) sets the pace by its slower readers instead of having every reader
 * but its favourites cut at the quota. The slowest receiver is never the pacer (with three or
 * more), so one client cannot set the pace; it takes a tenth of them, and a pack that stops moving
 * (less than FLOW_PACK_MIN_PROGRESS in FLOW_PACK_STALL_TICKS ticks while it holds) is not waited
 * for: the rule is suspended until the head has moved on by twice the quota, so stuck readers meet
 * the slow policy however many they are. A client the slow policy dropped does not count (the loop
 * leaves it out) until it is within the pack window again. docs/PROTOCOL.md has the measurements
 * behind it.
 *
 * Positions are in log units (bcast_units_at): a receiver's reach is the units before its cursor,
 * and it only grows while the receiver stays.
 */
#ifndef RINGCAST_FLOW_H
#define RINGCAST_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLOW_NONE UINT32_MAX /* no slot; as an origin: every receiver counts (echo) */

/* A holding pack whose pacer reads less than FLOW_PACK_MIN_PROGRESS bytes in
 * FLOW_PACK_STALL_TICKS ticks in a row (100 ms each) is not waited for: about 0.2 MB/s. The loop
 * measures what receivers have read (acknowledged), which moves smoothly, not their cursors. */
#define FLOW_PACK_MIN_PROGRESS (64u << 10)
#define FLOW_PACK_STALL_TICKS 3u

struct flow_lead {
    uint32_t slot;
    uint64_t reach;
};

struct flow {
    /* private */
    struct flow_lead top[2]; /* top[0] the most advanced; slot FLOW_NONE when empty */
    bool stale;              /* a leader left: rebuild (flow_reset + flow_advance) before asking */
    uint64_t pace;
    /* the pack rule */
    uint64_t pack_window;      /* 0: off */
    uint64_t pack_suspend;     /* how far the head moves on while the rule is suspended */
    uint64_t pack_off_until;   /* vhead below which the rule is suspended */
    uint64_t pack_mark;        /* the pacer's position when the pack last started or moved */
    uint32_t pack_still_ticks; /* holding ticks since then */
    bool pack_marked;
    bool pack_behind; /* at the last count, most receivers were outside the pack window */
};

/** Start with no receivers, a pace window of @pace units and a pack window of @pack_window
 * (0: no pack rule). */
void flow_init(struct flow *f, uint64_t pace, uint64_t pack_window);

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

/** Receivers whose reach is at least this are within the pack window of @vhead. */
static inline uint64_t flow_pack_floor(const struct flow *f, uint64_t vhead)
{
    return vhead > f->pack_window ? vhead - f->pack_window : 0;
}

/** The owner counted its @receivers: @within of them at or past flow_pack_floor(). */
void flow_pack_count(struct flow *f, uint32_t within, uint32_t receivers);

/** Whether the pack rule holds publishers now (with the head at @vhead). */
static inline bool flow_pack_holds(const struct flow *f, uint64_t vhead)
{
    return f->pack_behind && vhead >= f->pack_off_until;
}

/** Which of @n receivers paces the pack, counted from 0 = the most advanced: nine tenths of the
 * way down, and never the last one when there are three or more. */
static inline size_t flow_pack_rank(size_t n)
{
    size_t k = (n - 1) * 9 / 10;
    return n >= 3 && k > n - 2 ? n - 2 : k;
}

/** The flow_pack_rank(@n)-th largest of @pos[0..@n) (reordered). @n > 0. */
uint64_t flow_pack_pacer(uint64_t *pos, size_t n);

/** The periodic tick, with the head at @vhead and @pacer the pacer's position among how far each
 * receiver has read, in bytes (any value when the rule does not hold; count first): a holding
 * pack that stopped moving is suspended. */
void flow_pack_tick(struct flow *f, uint64_t pacer, uint64_t vhead);

#endif
