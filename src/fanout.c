/* Fan-out: the log to one send per client, deliveries, the quota and the drop policy. */
#include "ringcast/fanout.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "ringcast/alloc.h"

/* A send moves at most what a socket buffer can take anyway; keeps lengths in 32 bits. */
#define SEND_MAX (64u << 20)

static inline uint32_t skip_origin(const struct fanout *fo, uint32_t self)
{
    return fo->echo ? BCAST_NO_ORIGIN : self;
}

void fanout_join(const struct fanout *fo, struct fanout_client *fc)
{
    memset(fc, 0, sizeof(*fc));
    fc->cursor = fo->log->head;
    fc->vcursor = fo->log->vhead;
    fc->seq = fo->log->frames;
}

void fanout_published(const struct fanout *fo, struct fanout_client *fc, uint64_t at, size_t len)
{
    fc->own_end = at + len;
    if (!fo->echo)
        fc->own_ahead += len;
}

static void move_cursor(const struct fanout *fo, struct fanout_client *fc, uint64_t to)
{
    fc->cursor = to;
    fc->vcursor = bcast_units_at(fo->log, to);
}

bool fanout_plan(const struct fanout *fo, struct fanout_client *fc, uint32_t self, bool zc_ok,
                 uint64_t zc_threshold, struct fanout_send *out, bool *zc)
{
    const struct bcast *log = fo->log;
    *zc = false;
    if (fc->inflight)
        return false;
    if (fc->resid) {
        *out = (struct fanout_send){.p = fc->resid + fc->resid_off,
                                    .len = fc->resid_len - fc->resid_off,
                                    .from_resid = true};
        fc->inflight = fc->inflight_resid = true;
        fc->inflight_zc = false;
        fc->inflight_len = out->len;
        fo->stats->sends++;
        return true;
    }
    uint64_t skipped = 0, start = fc->cursor;
    uint64_t len = bcast_next_range(log, &start, skip_origin(fo, self), fc->own_end, &skipped);
    if (skipped) {
        /* Its own frames are not delivered to it: step over them. */
        fc->own_ahead -= skipped;
        move_cursor(fo, fc, start);
        fc->seq = bcast_seq_at(log, start);
    }
    /* The range ends at head or at one of its own records: a frame boundary whose sequence
     * number says how many frames the send carries. */
    fc->inflight_end_seq = len ? bcast_seq_at(log, start + len) : fc->seq;
    fc->inflight_vend = start + len == log->head ? log->vhead : 0;
    if (fc->finishing) {
        if (fc->close_at == UINT64_MAX)
            fc->close_at = bcast_frame_end(log, fo->framing, fc->cursor);
        len = fc->close_at > start ? fc->close_at - start : 0;
        fc->inflight_end_seq = fc->seq; /* not a known boundary: not counted */
        fc->inflight_vend = 0;
    }
    if (len == 0)
        return false;
    if (len > SEND_MAX) {
        len = SEND_MAX;
        fc->inflight_end_seq = fc->seq; /* the next send counts those frames */
        fc->inflight_vend = 0;
    }
    if (zc_ok && fc->zc_count < FANOUT_ZC_MAX && len >= zc_threshold &&
        (zc_threshold == 0 || !fc->zc_copied) &&
        (fc->zc_count == 0 || start - fc->zc_start[fc->zc_head] < FANOUT_ZC_WINDOW)) {
        *zc = true;
        if (len > FANOUT_ZC_WINDOW) {
            len = FANOUT_ZC_WINDOW;
            fc->inflight_end_seq = fc->seq;
            fc->inflight_vend = 0;
        }
    }
    *out = (struct fanout_send){.p = bcast_ptr(log, start), .len = (uint32_t)len, .log_off = start};
    fc->inflight = true;
    fc->inflight_resid = false;
    fc->inflight_zc = *zc;
    fc->inflight_start = start;
    fc->inflight_len = (uint32_t)len;
    fo->stats->sends++;
    if (*zc)
        fo->stats->zc_sends++;
    return true;
}

static void resid_free(const struct fanout *fo, struct fanout_client *fc)
{
    if (!fc->resid)
        return;
    *fo->held_bytes -= fc->resid_len;
    rc_free(fc->resid);
    fc->resid = NULL;
    fc->resid_len = fc->resid_off = 0;
}

enum fanout_sent fanout_sent(const struct fanout *fo, struct fanout_client *fc, int res)
{
    assert(fc->inflight);
    fc->inflight = false;
    if (fc->inflight_resid) {
        fc->inflight_resid = false;
        if (res > 0) {
            fc->resid_off += (uint32_t)res;
            fo->stats->bytes_out += (uint64_t)res;
            if (fc->resid_off == fc->resid_len) {
                resid_free(fo, fc);
                fo->stats->deliveries++;
                stats_observe_batch(fo->stats, 1);
            }
        }
    } else if (res > 0) {
        fo->stats->bytes_out += (uint64_t)res;
        if ((uint32_t)res == fc->inflight_len && fc->inflight_vend) {
            fc->cursor = fc->inflight_start + (uint64_t)res;
            fc->vcursor = fc->inflight_vend;
        } else {
            move_cursor(fo, fc, fc->inflight_start + (uint64_t)res);
        }
        if ((uint32_t)res == fc->inflight_len && fc->inflight_end_seq > fc->seq) {
            uint64_t frames = fc->inflight_end_seq - fc->seq;
            fc->seq = fc->inflight_end_seq;
            fo->stats->deliveries += frames;
            stats_observe_batch(fo->stats, frames);
        }
    }
    if (res < 0 && res != -EAGAIN)
        return FANOUT_SENT_ERROR;
    if (res < 0 || (uint32_t)res < fc->inflight_len)
        return FANOUT_SENT_SHORT;
    return FANOUT_SENT_ALL;
}

void fanout_zc_pending(struct fanout_client *fc, uint64_t start)
{
    /* fanout_plan never starts a zero-copy send past FANOUT_ZC_MAX un-notified ones. */
    assert(fc->zc_count < FANOUT_ZC_MAX);
    fc->zc_start[(fc->zc_head + fc->zc_count) % FANOUT_ZC_MAX] = start;
    fc->zc_count++;
}

void fanout_zc_notified(struct fanout_client *fc)
{
    /* TCP frees a socket's pages in the order they were sent: the oldest range goes first. */
    if (fc->zc_count == 0)
        return;
    fc->zc_head = (uint8_t)((fc->zc_head + 1) % FANOUT_ZC_MAX);
    fc->zc_count--;
}

uint64_t fanout_pin(const struct fanout *fo, const struct fanout_client *fc, bool open)
{
    uint64_t pin = fo->log->head;
    if (open)
        pin = fc->cursor;
    else if (fc->inflight && !fc->inflight_resid)
        pin = fc->inflight_start;
    if (fc->zc_count && fc->zc_start[fc->zc_head] < pin)
        pin = fc->zc_start[fc->zc_head];
    return pin;
}

uint64_t fanout_charge(const struct fanout *fo, const struct fanout_client *fc)
{
    return fo->log->vhead - fc->vcursor + (fc->resid_len - fc->resid_off);
}

uint64_t fanout_pinned(const struct fanout *fo, const struct fanout_client *fc)
{
    uint64_t pin = fanout_pin(fo, fc, true);
    uint64_t vpin = pin == fc->cursor ? fc->vcursor : bcast_units_at(fo->log, pin);
    return fo->log->vhead - vpin + (fc->resid_len - fc->resid_off);
}

uint64_t fanout_owed(const struct fanout *fo, const struct fanout_client *fc)
{
    return fo->log->head - fc->cursor - fc->own_ahead + (fc->resid_len - fc->resid_off);
}

/*
 * Drop policy: discard the oldest frames queued for @fc, keeping about keep_on_drop bytes of the
 * newest, so it soon receives current data again and is not judged again at once. A frame
 * already partly sent is finished first (its rest copied aside, since its log bytes are let go).
 */
static enum fanout_verdict drop_backlog(const struct fanout *fo, struct fanout_client *fc,
                                        uint32_t self)
{
    const struct bcast *log = fo->log;
    uint64_t frame_end = bcast_frame_end(log, fo->framing, fc->cursor);
    uint64_t resume =
        log->head > frame_end + fo->keep_on_drop ? log->head - fo->keep_on_drop : frame_end;
    resume = bcast_frame_end(log, fo->framing, resume);
    if (frame_end > fc->cursor) {
        assert(!fc->resid); /* sends come from a resid first, so the cursor is on a boundary */
        uint32_t n = (uint32_t)(frame_end - fc->cursor);
        fc->resid = rc_malloc(n);
        if (!fc->resid)
            return FANOUT_NOMEM;
        memcpy(fc->resid, bcast_ptr(log, fc->cursor), n);
        fc->resid_len = n;
        fc->resid_off = 0;
        *fo->held_bytes += n;
    }
    uint64_t dropped =
        bcast_count_frames(log, fo->framing, frame_end, resume, skip_origin(fo, self));
    fc->frames_dropped += dropped;
    fo->stats->frames_dropped += dropped;
    move_cursor(fo, fc, resume);
    fc->seq = bcast_seq_at_boundary(log, fo->framing, resume);
    if (!fo->echo)
        fc->own_ahead = bcast_origin_bytes(log, resume, log->head, self);
    return FANOUT_DROPPED;
}

enum fanout_verdict fanout_judge(const struct fanout *fo, struct fanout_client *fc, uint32_t self)
{
    if (fc->finishing) {
        if (fc->inflight)
            return FANOUT_OK;
        if (fc->close_at == UINT64_MAX)
            fc->close_at = bcast_frame_end(fo->log, fo->framing, fc->cursor);
        return fc->cursor >= fc->close_at ? FANOUT_FINISHED : FANOUT_OK;
    }
    enum fanout_verdict v = FANOUT_OK;
    if (fanout_charge(fo, fc) > fo->quota) {
        if (fo->policy == SLOW_DISCONNECT)
            return FANOUT_CUT;
        if (fc->inflight) /* the bytes under a send in flight stay until it completes */
            return FANOUT_OK;
        v = drop_backlog(fo, fc, self);
        if (v != FANOUT_DROPPED)
            return v;
    }
    /* What the kernel holds for zero-copy sends cannot be dropped: a client that pins more
     * than its quota that way (its cursor moved on, its socket did not) is cut, and the reset
     * of its socket frees the pages. */
    if (fc->zc_count && fanout_pinned(fo, fc) > fo->quota + FANOUT_ZC_PIN)
        return FANOUT_CUT;
    return v;
}

void fanout_finish(const struct fanout *fo, struct fanout_client *fc)
{
    (void)fo;
    fc->finishing = true;
    fc->close_at = UINT64_MAX; /* found once no send is in flight: the cursor is final then */
}

bool fanout_release(const struct fanout *fo, struct fanout_client *fc)
{
    if (fc->inflight)
        return false;
    resid_free(fo, fc);
    return true;
}
