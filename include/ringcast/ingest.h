/*
 * Ingest: received bytes to whole frames in the broadcast log. Pure: no I/O.
 *
 * Whole frames go to the log straight from the receive buffer, one append per run. A frame that
 * spans receive buffers is assembled in a small per-client buffer (frame_partial). What was
 * received goes into the log; flow control then says whether to read the publisher further
 * (INGEST_PAUSED: stop reading). Bytes already received when a pause takes effect are few (what
 * one batch of completions carries) and the log is sized for them, so receive buffers always go
 * back at once. What does not fit is copied aside (the stash): at most what the publisher's
 * socket had buffered when the pause took effect, since it is not read again before its stash
 * is in the log.
 */
#ifndef RINGCAST_INGEST_H
#define RINGCAST_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/bcast.h"
#include "ringcast/fanout.h"
#include "ringcast/flow.h"
#include "ringcast/frame.h"
#include "ringcast/stats.h"

struct ingest_client {
    /* private to ingest */
    struct frame_partial partial; /* an incomplete frame */
    uint8_t *stash;               /* bytes received while paused, not framed yet */
    uint32_t stash_len, stash_off, stash_cap;
    bool partial_complete : 1; /* partial holds a whole frame the log had no room for yet */
    bool closed : 1;           /* takes nothing more: its connection is going */
};

struct ingest {
    struct bcast *log;
    struct flow *flow;
    const struct fanout *fanout;
    enum framing framing;
    bool echo;
    uint64_t max_frame;
    uint64_t pace;       /* --pace-window, as given to flow */
    uint64_t race_slack; /* what may arrive after a pause before it takes effect */
    struct stats *stats;
    uint64_t *held_bytes;  /* incomplete frames are counted here (--max-partial-memory) */
    uint64_t *stash_bytes; /* and stashes here */
    /* The log is full: make room for @len bytes (reclaim behind the oldest reader). True if it
     * fits now. May be NULL. */
    bool (*make_room)(void *ctx, size_t len);
    /* Frames appended (for -v logging). May be NULL. */
    void (*on_frames)(void *ctx, uint32_t origin, const uint8_t *p, size_t len);
    void *ctx;
};

enum ingest_result {
    INGEST_DONE,     /* all taken */
    INGEST_PAUSED,   /* stop reading: flow control, or a full log (*used bytes were taken;
                        stash the rest) */
    INGEST_TOO_LONG, /* a frame is longer than max_frame: close the client (nothing more taken) */
    INGEST_NOMEM,    /* a partial frame could not grow: close the client */
    INGEST_CLOSED,   /* the client is closed: nothing taken */
};

/**
 * Frame @p[0..@len) from the client in slot @origin (whose fan-out state is @out) into the log,
 * as far as flow control allows. *@used says how much was taken. Never appends for a closed
 * client.
 */
enum ingest_result ingest_feed(struct ingest *in, struct ingest_client *ic, uint32_t origin,
                               struct fanout_client *out, const uint8_t *p, size_t len,
                               size_t *used);

/** Whether flow control lets the server read more from @origin now. */
bool ingest_may_read(const struct ingest *in, uint32_t origin);

/** Keep @p[0..@len) aside until ingest_resume; 0 or -ENOMEM. Counted in stash_bytes. */
int ingest_stash(struct ingest *in, struct ingest_client *ic, const uint8_t *p, size_t len);

/**
 * Feed what a paused client left aside (an assembled frame, then its stash). INGEST_DONE when
 * nothing is left and flow control lets it be read again, INGEST_PAUSED when it must wait.
 */
enum ingest_result ingest_resume(struct ingest *in, struct ingest_client *ic, uint32_t origin,
                                 struct fanout_client *out);

/** Whether @ic has bytes waiting for ingest_resume. */
static inline bool ingest_waiting(const struct ingest_client *ic)
{
    return ic->partial_complete || ic->stash_off < ic->stash_len;
}

/** Whether an incomplete frame is held (the frame timeout applies). */
static inline bool ingest_mid_frame(const struct ingest_client *ic)
{
    return ic->partial.len > 0 && !ic->partial_complete;
}

/** Memory held for @ic's incomplete frame: what --max-partial-memory counts. */
static inline uint64_t ingest_held(const struct ingest_client *ic)
{
    return ic->partial.cap;
}

/** Memory held for @ic's bytes set aside while paused (bounded by its socket's receive buffer:
 * only what raced the pause is set aside). */
static inline uint64_t ingest_stashed(const struct ingest_client *ic)
{
    return ic->stash_cap;
}

/** The client is going: free what it holds and refuse all further input. */
void ingest_close(struct ingest *in, struct ingest_client *ic);

#endif
