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

void fanout_join(const struct fanout *fo, struct fanout_client *fc, uint32_t self)
{
    memset(fc, 0, sizeof(*fc));
    fc->self = self;
    fc->cursor = fo->log->head;
    fc->vcursor = fo->log->vhead;
    fc->seq = fo->log->frames;
}

/*
 * A muted client is out of every walk over the log: not by moving its cursor to the head after
 * each append (an append inside a batch could still find it behind, and every reader of the
 * cursor would have to know), but by each function below answering "nothing" for it.
 */
void fanout_mute(struct fanout_client *fc)
{
    fc->muted = true;
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

/* Add the ranges after the first, stepping over the client's own records between them, so one
 * send carries everything pending even when its own frames are interleaved with others'. */
static uint64_t more_segments(const struct fanout *fo, const struct fanout_client *fc,
                              uint32_t self, struct fanout_send *out, uint64_t pos, uint64_t total,
                              bool *capped)
{
    const struct bcast *log = fo->log;
    while (out->niov < FANOUT_IOV_MAX && pos < log->head && total < SEND_MAX) {
        uint64_t skipped = 0, start = pos;
        uint64_t len = bcast_next_range(log, &start, skip_origin(fo, self), fc->own_end, &skipped);
        if (len == 0)
            break; /* only its own frames up to the head */
        if (total + len > SEND_MAX) {
            len = SEND_MAX - total;
            *capped = true;
        }
        out->iov[out->niov++] = (struct iovec){.iov_base = bcast_ptr(log, start), .iov_len = len};
        total += len;
        pos = start + len;
    }
    return pos;
}

bool fanout_plan(const struct fanout *fo, struct fanout_client *fc, uint32_t self, bool zc_ok,
                 uint64_t zc_threshold, struct fanout_send *out, bool *zc)
{
    const struct bcast *log = fo->log;
    *zc = false;
    if (fc->inflight || fc->muted)
        return false;
    fc->self = self; /* took_from_log steps over the same records */
    if (fc->resid) {
        *out = (struct fanout_send){.from_resid = true, .niov = 1};
        out->iov[0] = (struct iovec){.iov_base = fc->resid + fc->resid_off,
                                     .iov_len = fc->resid_len - fc->resid_off};
        fc->inflight = fc->inflight_resid = true;
        fc->inflight_zc = false;
        fc->inflight_part = fc->cursor < log->head;
        fc->inflight_len = fc->resid_len - fc->resid_off;
        fc->inflight_nseg = 1;
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
    if (fc->finishing) {
        if (fc->close_at == UINT64_MAX)
            fc->close_at = bcast_frame_end(log, fo->framing, fc->cursor);
        len = fc->close_at > start ? fc->close_at - start : 0;
    }
    if (len == 0)
        return false;
    bool capped = false;
    if (len > SEND_MAX) {
        len = SEND_MAX;
        capped = true;
    }
    if (zc_ok && fc->zc_count < FANOUT_ZC_MAX && len >= zc_threshold &&
        (zc_threshold == 0 || !fc->zc_copied) &&
        (fc->zc_count == 0 || start - fc->zc_start[fc->zc_head] < FANOUT_ZC_WINDOW)) {
        *zc = true; /* one range only: SEND_ZC takes one buffer */
        if (len > FANOUT_ZC_WINDOW) {
            len = FANOUT_ZC_WINDOW;
            capped = true;
        }
    }
    *out = (struct fanout_send){.niov = 1};
    out->iov[0] = (struct iovec){.iov_base = bcast_ptr(log, start), .iov_len = len};
    uint64_t end = start + len;
    if (!*zc && !fc->finishing && !capped)
        end = more_segments(fo, fc, self, out, end, len, &capped);
    uint64_t total = 0;
    for (unsigned i = 0; i < out->niov; i++)
        total += out->iov[i].iov_len;
    /* Each range ends at head or at one of its own records: a frame boundary whose sequence
     * number says how many frames the send carries. Not so after a cap, or when finishing
     * (0: the next send counts those frames). */
    fc->inflight_end_seq = capped || fc->finishing ? 0 : bcast_seq_at(log, end);
    fc->inflight_vend = end == log->head ? log->vhead : 0;
    fc->inflight = true;
    fc->inflight_resid = false;
    fc->inflight_zc = *zc;
    fc->inflight_part = end < log->head;
    fc->inflight_start = start;
    fc->inflight_len = (uint32_t)total;
    fc->inflight_nseg = (uint8_t)out->niov;
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

/*
 * The socket took @res bytes of the send in flight: walk its ranges again (the log only grew
 * since, and they end at the same records) to move the cursor past them and past the client's
 * own records between them, and to count the frames each whole range delivered.
 */
static void took_from_log(const struct fanout *fo, struct fanout_client *fc, uint64_t res)
{
    const struct bcast *log = fo->log;
    uint32_t self_skip = fo->echo ? BCAST_NO_ORIGIN : fc->self;
    uint64_t pos = fc->inflight_start, left = fc->inflight_len, frames = 0;
    for (unsigned i = 0; i < fc->inflight_nseg && res > 0; i++) {
        uint64_t seglen = left;
        if (i > 0) {
            uint64_t skipped = 0, start = pos;
            uint64_t len = bcast_next_range(log, &start, self_skip, fc->own_end, &skipped);
            fc->own_ahead -= skipped;
            pos = start;
            fc->seq = bcast_seq_at(log, pos); /* a record's start: exact */
            if (i + 1 < fc->inflight_nseg)
                seglen = len;
        } else if (fc->inflight_nseg > 1) {
            uint64_t skipped = 0, start = pos;
            seglen = bcast_next_range(log, &start, self_skip, fc->own_end, &skipped);
        }
        if (res < seglen) {
            pos += res; /* mid-range: its frames are counted by a later send, a drop or the leave */
            break;
        }
        pos += seglen;
        res -= seglen;
        left -= seglen;
        uint64_t end_seq =
            i + 1 == fc->inflight_nseg ? fc->inflight_end_seq : bcast_seq_at(log, pos);
        if (end_seq > fc->seq) {
            frames += end_seq - fc->seq;
            fc->seq = end_seq;
        }
    }
    if (left == 0 && fc->inflight_vend) {
        fc->cursor = pos;
        fc->vcursor = fc->inflight_vend;
    } else {
        move_cursor(fo, fc, pos);
    }
    if (frames) {
        fo->stats->deliveries += frames;
        stats_observe_batch(fo->stats, frames);
    }
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
        took_from_log(fo, fc, (uint64_t)res);
    }
    if (res < 0 && res != -EAGAIN)
        return FANOUT_SENT_ERROR;
    if (res < 0 || (uint32_t)res < fc->inflight_len)
        return FANOUT_SENT_SHORT;
    return fc->inflight_part ? FANOUT_SENT_PART : FANOUT_SENT_ALL;
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
    if (open && !fc->muted)
        pin = fc->cursor;
    else if (fc->inflight && !fc->inflight_resid)
        pin = fc->inflight_start;
    if (fc->zc_count && fc->zc_start[fc->zc_head] < pin)
        pin = fc->zc_start[fc->zc_head];
    return pin;
}

uint64_t fanout_charge(const struct fanout *fo, const struct fanout_client *fc)
{
    if (fc->muted)
        return 0;
    return fo->log->vhead - fc->vcursor + (fc->resid_len - fc->resid_off) + fc->held_out;
}

uint64_t fanout_pinned(const struct fanout *fo, const struct fanout_client *fc)
{
    if (fc->muted)
        return 0;
    uint64_t pin = fanout_pin(fo, fc, true);
    uint64_t vpin = pin == fc->cursor ? fc->vcursor : bcast_units_at(fo->log, pin);
    return fo->log->vhead - vpin + (fc->resid_len - fc->resid_off);
}

uint64_t fanout_owed(const struct fanout *fo, const struct fanout_client *fc)
{
    if (fc->muted)
        return 0;
    return fo->log->head - fc->cursor - fc->own_ahead + (fc->resid_len - fc->resid_off);
}

/*
 * Short sends count no frames (finding frame ends inside a record costs a scan): the frames the
 * socket took whole before the cursor are counted here, when it matters (a drop, a departure).
 * Returns the end of the frame the cursor is in (the cursor itself on a boundary).
 */
static uint64_t count_whole_frames_taken(const struct fanout *fo, struct fanout_client *fc)
{
    const struct bcast *log = fo->log;
    uint64_t frame_end = bcast_frame_end(log, fo->framing, fc->cursor);
    uint64_t done =
        bcast_seq_at_boundary(log, fo->framing, frame_end) - (frame_end > fc->cursor ? 1 : 0);
    if (done > fc->seq) {
        fo->stats->deliveries += done - fc->seq;
        fc->seq = done;
    }
    return frame_end;
}

/*
 * Drop policy: discard the oldest frames queued for @fc, keeping about keep_on_drop units of the
 * newest, so it soon receives current data again and is not judged again at once. A frame
 * already partly sent is finished first (its rest copied aside, since its log bytes are let go).
 */
static enum fanout_verdict drop_backlog(const struct fanout *fo, struct fanout_client *fc,
                                        uint32_t self)
{
    const struct bcast *log = fo->log;
    /* Frames a short send already delivered whole are deliveries, not drops. */
    uint64_t frame_end = count_whole_frames_taken(fo, fc);
    /* Keep about keep_on_drop log units of the newest frames: counted in units, like the quota,
     * so a backlog of tiny interleaved frames shrinks as much as one of large ones. The rest of
     * a frame in progress is kept too (aside), and with it the client must end within its quota:
     * with a frame longer than half of it, fewer are kept (found by fuzz_fanout). */
    uint64_t aside = (fc->resid_len - fc->resid_off) + (frame_end - fc->cursor);
    uint64_t room = fo->quota > aside ? fo->quota - aside : 0;
    uint64_t keep = fo->keep_on_drop < room ? fo->keep_on_drop : room;
    uint64_t target = log->vhead > keep ? log->vhead - keep : 0;
    uint64_t resume = bcast_off_at_units(log, target);
    if (resume < frame_end)
        resume = frame_end;
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
    if (fc->muted) /* nothing was ever owed to it: a finishing one is done at once */
        return fc->finishing ? FANOUT_FINISHED : FANOUT_OK;
    if (fc->finishing) {
        if (fc->inflight)
            return FANOUT_OK;
        if (fc->close_at == UINT64_MAX)
            fc->close_at = bcast_frame_end(fo->log, fo->framing, fc->cursor);
        return fc->cursor >= fc->close_at ? FANOUT_FINISHED : FANOUT_OK;
    }
    if (fanout_charge(fo, fc) <= fo->quota)
        return FANOUT_OK;
    if (fo->policy == SLOW_DISCONNECT)
        return FANOUT_CUT;
    if (fc->inflight) /* the bytes under a send in flight stay until it completes */
        return FANOUT_OK;
    /* Pages the kernel holds for zero-copy sends cannot be dropped, and a client that needs a
     * drop is not reading them: it is cut instead, and the reset of its socket frees them. */
    if (fc->zc_count)
        return FANOUT_CUT;
    return drop_backlog(fo, fc, self);
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
    /* Its cursor still pins the log: what it took whole before leaving was delivered. (A muted
     * client's cursor pins nothing: the log there may be gone, and it took nothing.) */
    if (!fc->muted)
        count_whole_frames_taken(fo, fc);
    resid_free(fo, fc);
    return true;
}
