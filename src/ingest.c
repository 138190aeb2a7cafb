/* Ingest: received bytes to whole frames in the log, as far as flow control allows. */
#include "ringcast/ingest.h"

#include <errno.h>
#include <string.h>

#include "ringcast/alloc.h"

/* Frames are scanned a step at a time: a long stash is put in the log a window at a time, and
 * scanning all of it each time would make resuming quadratic in its length. */
#define SCAN_STEP (64u << 10)

/* Log units @origin may still append now: up to race_slack past the pace window, so that bytes
 * received after flow control said stop go in too (the log is sized for them). *@caught_up
 * when its leading receiver has everything: then one frame of any length may go. None while the
 * pack rule holds (flow.h). */
static uint64_t append_room(const struct ingest *in, uint32_t origin, bool *caught_up,
                            uint64_t slack)
{
    const struct bcast *log = in->log;
    if (flow_pack_holds(in->flow, log->vhead)) {
        *caught_up = false;
        return 0;
    }
    uint64_t reach = flow_leader_reach(in->flow, in->echo ? FLOW_NONE : origin, log->vhead);
    uint64_t lag = log->vhead - reach, limit = in->pace + slack;
    *caught_up = lag == 0;
    return lag < limit ? limit - lag : 0;
}

/* How much of the @complete bytes (@nframes whole frames) at @p fits the room: whole frames,
 * at least one when the leader is caught up; 0 when none may go now. */
static size_t fit_room(const struct ingest *in, uint32_t origin, const uint8_t *p, size_t complete,
                       size_t *nframes, uint64_t slack)
{
    bool caught_up;
    uint64_t room = append_room(in, origin, &caught_up, slack);
    /* A new record's weight, unless the run extends the last one (a prefix would too). */
    uint64_t weight = bcast_append_units(in->log, origin, complete) - complete;
    if (complete + weight <= room)
        return complete;
    size_t take = 0;
    if (room > weight) {
        struct frame_scan t;
        frame_scan(in->framing, p, room - weight, in->max_frame, &t);
        take = t.complete;
        *nframes = t.nframes;
    }
    if (take == 0 && caught_up) {
        take = frame_wire_len(in->framing, p, complete);
        *nframes = 1;
    }
    return take;
}

/* Append whole frames from @origin, if flow control (append_room) and the log's room allow. */
static enum ingest_result append(struct ingest *in, uint32_t origin, struct fanout_client *out,
                                 const uint8_t *p, size_t len, size_t nframes, uint64_t slack)
{
    struct bcast *log = in->log;
    bool caught_up;
    if (bcast_append_units(log, origin, len) > append_room(in, origin, &caught_up, slack) &&
        !caught_up)
        return INGEST_PAUSED;
    if (!bcast_fits(log, len) && !(in->make_room && in->make_room(in->ctx, len)))
        return INGEST_PAUSED;
    uint64_t at = bcast_append(log, origin, p, len, (uint32_t)nframes);
    fanout_published(in->fanout, out, at, len);
    in->stats->frames_in += nframes;
    in->stats->bytes_in += len;
    if (in->on_frames)
        in->on_frames(in->ctx, origin, p, len);
    return INGEST_DONE;
}

bool ingest_may_read(const struct ingest *in, uint32_t origin)
{
    return flow_may_append(in->flow, in->echo ? FLOW_NONE : origin, in->log->vhead, 0);
}

static void partial_drop(struct ingest *in, struct ingest_client *ic)
{
    *in->held_bytes -= frame_partial_reset(&ic->partial);
    ic->partial_complete = false;
}

/* Feed @p[0..@len); appends may go @slack past the pace window. */
static enum ingest_result feed(struct ingest *in, struct ingest_client *ic, uint32_t origin,
                               struct fanout_client *out, const uint8_t *p, size_t len,
                               size_t *used, uint64_t slack)
{
    size_t pos = 0;
    enum ingest_result r = INGEST_DONE;
    *used = 0;
    if (ic->closed)
        return INGEST_CLOSED;
    while (pos < len || ic->partial_complete) {
        if (ic->partial_complete) {
            /* A frame assembled across buffers goes into the log in one piece. */
            r = append(in, origin, out, ic->partial.buf, ic->partial.len, 1, slack);
            if (r != INGEST_DONE)
                break;
            partial_drop(in, ic);
            continue;
        }
        if (ic->partial.len == 0) {
            /* The common case: whole frames straight from the receive buffer, one append. */
            struct frame_scan s;
            size_t avail = len - pos, scan = avail < SCAN_STEP ? avail : SCAN_STEP;
            frame_scan(in->framing, p + pos, scan, in->max_frame, &s);
            if (scan < avail && s.complete == 0 && !s.too_long) /* a frame longer than a step */
                frame_scan(in->framing, p + pos, scan = avail, in->max_frame, &s);
            if (s.complete) {
                /* A stash can hold more than the window: it goes in run by run. */
                size_t nframes = s.nframes;
                size_t take = fit_room(in, origin, p + pos, s.complete, &nframes, slack);
                r = take ? append(in, origin, out, p + pos, take, nframes, slack) : INGEST_PAUSED;
                if (r != INGEST_DONE)
                    break;
                pos += take;
                if (take < s.complete)
                    continue;
            }
            if (s.too_long) {
                r = INGEST_TOO_LONG;
                break;
            }
            if (pos == len)
                break;
            if (scan < avail)
                continue; /* whole frames may follow the step */
        }
        /* The rest starts (or continues) a frame that ends in a later buffer. */
        size_t took;
        int64_t grown;
        enum frame_feed f = frame_partial_feed(&ic->partial, in->framing, in->max_frame, p + pos,
                                               len - pos, &took, &grown);
        *in->held_bytes += (uint64_t)grown;
        if (f == FRAME_TOO_LONG) {
            r = INGEST_TOO_LONG;
            break;
        }
        if (f == FRAME_NOMEM) {
            r = INGEST_NOMEM;
            break;
        }
        pos += took;
        if (f == FRAME_COMPLETE)
            ic->partial_complete = true;
    }
    *used = pos;
    /* What was received is in the log now; whether to read more is flow control's call. */
    if (r == INGEST_DONE && !ingest_may_read(in, origin))
        r = INGEST_PAUSED;
    return r;
}

enum ingest_result ingest_feed(struct ingest *in, struct ingest_client *ic, uint32_t origin,
                               struct fanout_client *out, const uint8_t *p, size_t len,
                               size_t *used)
{
    return feed(in, ic, origin, out, p, len, used, in->race_slack);
}

int ingest_stash(struct ingest *in, struct ingest_client *ic, const uint8_t *p, size_t len)
{
    if (len == 0)
        return 0;
    uint32_t keep = ic->stash_len - ic->stash_off;
    if (ic->stash_off && keep)
        memmove(ic->stash, ic->stash + ic->stash_off, keep);
    ic->stash_off = 0;
    ic->stash_len = keep;
    if ((uint64_t)keep + len > ic->stash_cap) {
        uint64_t cap = (uint64_t)keep + len;
        if (cap > UINT32_MAX)
            return -ENOMEM;
        uint8_t *grown = rc_realloc(ic->stash, cap);
        if (!grown)
            return -ENOMEM;
        *in->stash_bytes += cap - ic->stash_cap;
        ic->stash = grown;
        ic->stash_cap = (uint32_t)cap;
    }
    memcpy(ic->stash + keep, p, len);
    ic->stash_len = keep + (uint32_t)len;
    return 0;
}

static void stash_free(struct ingest *in, struct ingest_client *ic)
{
    *in->stash_bytes -= ic->stash_cap;
    rc_free(ic->stash);
    ic->stash = NULL;
    ic->stash_len = ic->stash_off = ic->stash_cap = 0;
}

enum ingest_result ingest_resume(struct ingest *in, struct ingest_client *ic, uint32_t origin,
                                 struct fanout_client *out)
{
    size_t used;
    const uint8_t *p = ic->stash ? ic->stash + ic->stash_off : NULL;
    /* What was set aside goes in within the window only: it is not racing anything. */
    enum ingest_result r = feed(in, ic, origin, out, p, ic->stash_len - ic->stash_off, &used, 0);
    ic->stash_off += (uint32_t)used;
    if (ic->stash && ic->stash_off == ic->stash_len)
        stash_free(in, ic); /* all in the log, whatever flow control says next */
    return r;
}

void ingest_close(struct ingest *in, struct ingest_client *ic)
{
    ic->closed = true;
    partial_drop(in, ic);
    if (ic->stash)
        stash_free(in, ic);
}
