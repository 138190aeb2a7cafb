/*
 * Fuzz target "fanout": the relay's state machine, driven by a script. bcast, flow, fanout,
 * ingest and recvctl are wired as src/loop.c wires them, exactly as tests/unit/test_relay_model.c
 * does (on_recv, ingest_outcome, resume_paused, flush_clients, judge, try_send, on_send,
 * make_room, loop_doom, begin_close, maybe_finish_close, rebuild_flow; see there for each step's
 * counterpart in loop.c); the difference is that the input, not a random generator, says what
 * happens and in which order.
 *
 * Input: a 9-byte header, then operations of 3 bytes [op | slot << 4] [a] [b]:
 *   header: [flags: bit 0 len32, 1 echo, 2 drop policy, 3 zero-copy] [max_frame] [max_queue]
 *           [pace window] [socket buffer] [recv buffer] [recvs per batch] [clients at start]
 *           [which of them publish (bit mask)]
 *   op 0  the batch ends (after_batch, then the checks); also ops 10-15
 *      1  client `slot` publishes: a recv of 1 + a % recv_buf bytes of its stream (new frames of
 *         b % (payload limit + 1) bytes), or its EOF once its peer closed
 *      2  the send in flight for `slot` completes: what its socket has room for (a < 200), a
 *         part of it (a < 254), -EAGAIN (254) or -ECONNRESET (255). A send prepared in one
 *         batch completes in the next (it is MSG_DONTWAIT): the script says how and when in
 *         that batch; if it does not, it takes what the socket has room for at the batch's end
 *      3  its POLLOUT fires (if its socket has room)
 *      4  a zero-copy notification arrives (once its peer read past the send)
 *      5  its multishot recv ends (by itself, or the cancellation landed)
 *      6  its peer reads: everything (a >= 128) or a * 8 bytes
 *      7  its peer stops reading, or starts again
 *      8  a client joins in `slot` (a publisher when a & 1)
 *      9  its peer closes (EOF comes with its next recv)
 * At the end every peer reads everything and every publisher's stream goes in (the drain).
 *
 * Checked after every step and every batch, against a model of every frame the log got:
 *  - each client that was never dropped receives exactly the frames appended after it joined
 *    (its own left out unless echo), whole, in order; a dropped one a subsequence, and what it
 *    received plus what was counted dropped is everything due (at the end);
 *  - each publisher's frames reach the log exactly as sent, only while it is open;
 *  - the flow rule: an append for origin k happens only while a receiver other than k (any,
 *    with echo) is within the pace window of the head (plus what raced a pause), or none exists;
 *  - memory: what any client pins stays under the loop's ceiling (quota + two frames + what
 *    this batch and the one before appended, + FANOUT_ZC_PIN with zero-copy); a log sized like
 *    the loop's (one batch at most) never refuses an append;
 *    held_bytes and stash bytes are exactly what the clients hold; partial frames, remainders
 *    and stashes stay within their bounds;
 *  - nothing outlives its holder: a freed slot holds no send, remainder, zero-copy page, partial
 *    frame or stash; the flow's leaders and the paused list name live clients only;
 *  - a cut or dropped client was over its quota, and a dropped one is within it again;
 *  - recvctl agrees with the kernel, and a wanted recv is armed;
 *  - at the end everything drains: every stream is in the log and every reader got it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/alloc.h"
#include "ringcast/bcast.h"
#include "ringcast/fanout.h"
#include "ringcast/flow.h"
#include "ringcast/frame.h"
#include "ringcast/ingest.h"
#include "ringcast/recvctl.h"
#include "ringcast/stats.h"

#define MAXC 8
#define RESUME_PER_BATCH 256u /* as loop_int.h */
#define DRAIN_BATCHES 20000u
#define HEADER 9

struct sim;
static struct sim *current; /* for dump() in a failing check */
static void dump(const struct sim *m);

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_fanout: ");                                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        if (current)                                                                               \
            dump(current);                                                                         \
        abort();                                                                                   \
    } while (0)
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FAIL("check failed: " #cond ": " __VA_ARGS__);                                         \
    } while (0)

/* ---- helpers ------------------------------------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---- parameters ---------------------------------------------------------------------------- */

struct params {
    enum framing framing;
    bool echo;
    enum slow_policy policy;
    bool zerocopy;
    uint64_t max_frame; /* line: counts the '\n'; len32: the payload */
    uint64_t max_queue;
    uint64_t pace_window;
    uint32_t sockbuf;    /* a client's socket buffer */
    uint32_t recv_buf;   /* bytes at most per recv completion */
    unsigned recvs;      /* recv completions at most per batch */
    unsigned clients;    /* open at the start */
    unsigned publishers; /* bit mask: which of them publish */
};

/* ---- the simulated relay ------------------------------------------------------------------- */

struct sclient {
    /* the loop's struct conn, as far as the modules need it */
    bool used;   /* slot taken: open or closing */
    bool open;   /* CONN_OPEN */
    bool doomed; /* a verdict closes it at the end of the batch */
    bool paused; /* flow control paused it (in the paused FIFO) */
    bool poll_armed;
    bool poll_cancelled; /* its poll ends in the next batch */
    bool in_rearm;
    bool eof;        /* its peer closed while paused: closed once its bytes are in the log */
    bool closed_eof; /* doomed for EOF: everything it sent must be in the log */
    struct recvctl rx;
    struct ingest_client in;
    struct fanout_client out;
    /* the kernel's side */
    bool recv_active;        /* a multishot recv is outstanding and not ended */
    bool recv_final_pending; /* its last completion (no F_MORE) is on its way */
    bool cancel_sent;        /* a cancellation is queued for the next submit */
    bool send_pending;       /* a send was prepared; it completes in a later batch */
    unsigned send_batch;     /* the batch it was prepared in */
    struct fanout_send s;
    bool s_zc;
    uint64_t wpos, rpos; /* bytes the socket took, and the reader read */
    uint64_t zc_end[FANOUT_ZC_MAX];
    unsigned zc_n, zc_head; /* un-notified zero-copy sends: socket positions they end at */
    /* the peer */
    bool peer_closed; /* sent its FIN: the next recv completion is EOF */
    bool publisher;
    bool stopped;          /* does not read its socket */
    struct buf gen;        /* what it sends to the relay: whole frames */
    uint64_t gen_sent;     /* bytes the relay received */
    uint64_t gen_appended; /* bytes of it the log got */
    uint64_t gen_frames;
    /* what it received */
    uint64_t join_frame, next_frame; /* model frame indices */
    uint8_t *rxf;                    /* the frame being received */
    size_t rxf_len;
    uint64_t rx_frames, rx_bytes;
    uint64_t delivered; /* deliveries fanout counted for it */
    bool dropped;       /* a drop happened: a subsequence from then on */
    bool pack_exempt;   /* as struct conn's: dropped, not in the pack until it catches up */
};

struct sim {
    struct params P;
    uint64_t quota, pace, race_slack, batch_units_max, ceiling_fixed, log_units;
    struct bcast log;
    struct flow flow;
    struct fanout fo;
    struct ingest in;
    struct stats stats;
    uint64_t held, stash;
    struct sclient c[MAXC];
    uint32_t paused[MAXC];
    unsigned npaused;
    uint32_t doomed[MAXC];
    unsigned ndoomed;
    bool head_moved;
    bool draining;
    unsigned batch;
    unsigned batch_recvs; /* recv completions with data in this batch */
    uint64_t noise;       /* payload bytes */
    /* the model: every byte the log got (by offset) and every frame */
    struct buf mbytes;
    uint64_t *fstart;
    uint32_t *flen, *forigin;
    size_t nf, fcap;
    uint64_t last_vhead;
    uint64_t batch_units; /* log units appended in this batch */
    uint64_t prev_units;  /* ... and in the one before */
    unsigned room_fail;
    /* what happened (FUZZ_DEBUG=1 prints it) */
    unsigned cuts, drops, pauses, shorts, zc_pending, joins, leaves;
};

static inline bool live(const struct sclient *c)
{
    return c->used && c->open && !c->doomed;
}

static void dump(const struct sim *m)
{
    fprintf(stderr, "batch %u: head %llu vhead %llu tail %llu; flow top %u@%llu %u@%llu stale %d\n",
            m->batch, (unsigned long long)m->log.head, (unsigned long long)m->log.vhead,
            (unsigned long long)m->log.tail, m->flow.top[0].slot,
            (unsigned long long)m->flow.top[0].reach, m->flow.top[1].slot,
            (unsigned long long)m->flow.top[1].reach, m->flow.stale);
    for (uint32_t i = 0; i < MAXC; i++) {
        const struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        fprintf(stderr,
                "  slot %u: open %d doomed %d pub %d stopped %d paused %d poll %d send %d "
                "(batch %u, zc %d) cursor %llu vcursor %llu charge %llu zc %u dropped %d "
                "unread %llu\n",
                i, c->open, c->doomed, c->publisher, c->stopped, c->paused, c->poll_armed,
                c->send_pending, c->send_batch, c->s_zc, (unsigned long long)c->out.cursor,
                (unsigned long long)c->out.vcursor,
                (unsigned long long)fanout_charge(&m->fo, &c->out), c->out.zc_count, c->dropped,
                (unsigned long long)(c->wpos - c->rpos));
    }
}

/* ---- the model's frames -------------------------------------------------------------------- */

static void model_frame(struct sim *m, uint64_t off, uint32_t len, uint32_t origin)
{
    if (m->nf == m->fcap) {
        m->fcap = m->fcap ? 2 * m->fcap : 1024;
        m->fstart = realloc(m->fstart, m->fcap * sizeof(*m->fstart));
        m->flen = realloc(m->flen, m->fcap * sizeof(*m->flen));
        m->forigin = realloc(m->forigin, m->fcap * sizeof(*m->forigin));
        if (!m->fstart || !m->flen || !m->forigin)
            abort();
    }
    m->fstart[m->nf] = off;
    m->flen[m->nf] = len;
    m->forigin[m->nf] = origin;
    m->nf++;
}

/* Whether frame @i is one client @slot should receive (it joined before it, see join_frame). */
static bool expected_for(const struct sim *m, uint32_t slot, size_t i)
{
    return m->P.echo || m->forigin[i] != slot;
}

/* ---- the publisher's stream ---------------------------------------------------------------- */

static uint8_t noise(struct sim *m)
{
    uint64_t x = m->noise;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    m->noise = x;
    return (uint8_t)x;
}

static void gen_frame(struct sim *m, struct sclient *c, uint32_t slot, uint8_t size)
{
    uint8_t f[1 << 12];
    uint64_t maxp = m->P.framing == FRAMING_LINE ? m->P.max_frame - 1 : m->P.max_frame;
    uint64_t payload = size % (maxp + 1);
    size_t n = 0;
    if (m->P.framing == FRAMING_LEN32) {
        f[n++] = (uint8_t)(payload >> 24);
        f[n++] = (uint8_t)(payload >> 16);
        f[n++] = (uint8_t)(payload >> 8);
        f[n++] = (uint8_t)payload;
    }
    /* Who and which, where there is room; then noise ('\n' only as the line terminator). */
    char tag[32];
    int tl = snprintf(tag, sizeof(tag), "%u.%llu.", slot, (unsigned long long)c->gen_frames);
    for (uint64_t i = 0; i < payload; i++) {
        uint8_t b = i < (uint64_t)tl ? (uint8_t)tag[i] : noise(m);
        if (m->P.framing == FRAMING_LINE && b == '\n')
            b = 'N';
        f[n++] = b;
    }
    if (m->P.framing == FRAMING_LINE)
        f[n++] = '\n';
    buf_put(&c->gen, f, n);
    c->gen_frames++;
}

/* ---- hooks (loop.c's make_room and on_frames) ---------------------------------------------- */

static bool make_room(void *ctx, size_t len)
{
    struct sim *m = ctx;
    uint64_t keep = m->log.head;
    for (uint32_t i = 0; i < MAXC; i++) {
        const struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        uint64_t pin = fanout_pin(&m->fo, &c->out, c->open);
        if (pin < keep)
            keep = pin;
    }
    bcast_release(&m->log, keep);
    bool ok = bcast_fits(&m->log, len);
    if (!ok)
        m->room_fail++;
    return ok;
}

static void on_frames(void *ctx, uint32_t origin, const uint8_t *p, size_t len)
{
    struct sim *m = ctx;
    m->head_moved = true;
    CHECK(origin < MAXC, "origin %u", origin);
    struct sclient *c = &m->c[origin];
    /* Only an open client publishes, and exactly what it sent, in order. */
    if (!c->used || !c->open)
        FAIL("batch %u: append of %zu bytes for slot %u, which is closed", m->batch, len, origin);
    CHECK(c->gen_appended + len <= c->gen_sent, "slot %u: more appended than sent", origin);
    CHECK(memcmp(c->gen.p + c->gen_appended, p, len) == 0, "slot %u: other bytes appended", origin);
    c->gen_appended += len;
    uint64_t at = m->log.head - len;
    CHECK(at == m->mbytes.len, "append at %llu, model at %zu", (unsigned long long)at,
          m->mbytes.len);
    buf_put(&m->mbytes, p, len);
    for (size_t off = 0; off < len;) {
        size_t fl = frame_wire_len(m->P.framing, p + off, len - off);
        CHECK(fl > 0 && off + fl <= len, "an append of torn frames");
        model_frame(m, at + off, (uint32_t)fl, origin);
        off += fl;
    }
    /* The flow rule, from the receivers' true positions before the append (see the model). */
    uint64_t units = m->log.vhead - m->last_vhead, before = m->last_vhead;
    bool any = false, ok = false;
    uint64_t best = 0;
    for (uint32_t i = 0; i < MAXC; i++) {
        const struct sclient *r = &m->c[i];
        if (!r->used || !r->open || (!m->P.echo && i == origin))
            continue;
        if (r->doomed && !flow_stale(&m->flow))
            continue;
        any |= !r->doomed;
        uint64_t lag = before > r->out.vcursor ? before - r->out.vcursor : 0;
        if (lag == 0 || lag + units <= m->pace + m->race_slack)
            ok = true;
        if (r->out.vcursor > best)
            best = r->out.vcursor;
    }
    if (any && !ok)
        FAIL("batch %u: slot %u appended %llu units at vhead %llu, but its best receiver was at "
             "%llu (pace %llu, race slack %llu)",
             m->batch, origin, (unsigned long long)units, (unsigned long long)before,
             (unsigned long long)best, (unsigned long long)m->pace,
             (unsigned long long)m->race_slack);
    m->last_vhead = m->log.vhead;
    m->batch_units += units;
}

/* ---- the loop's actions -------------------------------------------------------------------- */

static void loop_doom(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    if (!live(c))
        return;
    c->doomed = true;
    flow_forget(&m->flow, slot);
    m->doomed[m->ndoomed++] = slot;
}

static void recv_act(struct sim *m, uint32_t slot, enum recvctl_action a)
{
    struct sclient *c = &m->c[slot];
    (void)m;
    if (a == RECVCTL_CANCEL)
        c->cancel_sent = true;
    else if (a == RECVCTL_ARM)
        c->in_rearm = true;
}

static void stop_reading(struct sim *m, uint32_t slot)
{
    recv_act(m, slot, recvctl_want(&m->c[slot].rx, false));
}

static void pause_publisher(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    if (c->paused)
        return;
    c->paused = true;
    m->pauses++;
    m->paused[m->npaused++] = slot;
    stop_reading(m, slot);
}

static void ingest_outcome(struct sim *m, uint32_t slot, enum ingest_result r, const uint8_t *rest,
                           size_t rest_len)
{
    struct sclient *c = &m->c[slot];
    switch (r) {
    case INGEST_DONE:
    case INGEST_CLOSED:
        break;
    case INGEST_PAUSED:
        if (ingest_stash(&m->in, &c->in, rest, rest_len) < 0) {
            loop_doom(m, slot);
            return;
        }
        pause_publisher(m, slot);
        break;
    case INGEST_TOO_LONG:
    case INGEST_NOMEM:
        FAIL("batch %u: slot %u: ingest result %d for frames within max_frame", m->batch, slot, r);
    }
}

/* The verdict's checks: who is cut or dropped was over its quota. */
static bool judge(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    uint64_t charge = fanout_charge(&m->fo, &c->out);
    bool zc = c->out.zc_count > 0;
    enum fanout_verdict v = fanout_judge(&m->fo, &c->out, slot);
    switch (v) {
    case FANOUT_OK:
        if (!c->out.inflight && fanout_charge(&m->fo, &c->out) > m->quota)
            FAIL("batch %u: slot %u judged OK at %llu units, quota %llu", m->batch, slot,
                 (unsigned long long)fanout_charge(&m->fo, &c->out), (unsigned long long)m->quota);
        return true;
    case FANOUT_DROPPED:
        m->drops++;
        CHECK(m->P.policy == SLOW_DROP, "a drop under the disconnect policy");
        CHECK(charge > m->quota, "slot %u dropped at %llu units, quota %llu", slot,
              (unsigned long long)charge, (unsigned long long)m->quota);
        c->dropped = true;
        c->pack_exempt = true;
        flow_advance(&m->flow, slot, c->out.vcursor);
        if (fanout_charge(&m->fo, &c->out) > m->quota)
            FAIL("batch %u: slot %u dropped from %llu to %llu units, still over its quota %llu",
                 m->batch, slot, (unsigned long long)charge,
                 (unsigned long long)fanout_charge(&m->fo, &c->out), (unsigned long long)m->quota);
        return true;
    case FANOUT_CUT: /* after a drop, what zero-copy still pins counts */
        CHECK(charge > m->quota, "slot %u cut at %llu units, quota %llu", slot,
              (unsigned long long)charge, (unsigned long long)m->quota);
        CHECK(m->P.policy == SLOW_DISCONNECT || zc, "slot %u cut under the drop policy", slot);
        m->cuts++;
        loop_doom(m, slot);
        return false;
    case FANOUT_NOMEM:
    case FANOUT_FINISHED:
        FAIL("batch %u: slot %u: verdict %d", m->batch, slot, v);
    }
    return true;
}

static void try_send(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    if (!live(c) || c->poll_armed || c->out.inflight)
        return;
    CHECK(!c->send_pending, "slot %u: a plan while a send is pending", slot);
    bool zc;
    uint64_t vbefore = c->out.vcursor;
    bool planned = fanout_plan(&m->fo, &c->out, slot, m->P.zerocopy, 0, &c->s, &zc);
    if (c->out.vcursor != vbefore)
        flow_advance(&m->flow, slot, c->out.vcursor);
    if (!planned)
        return;
    CHECK(fanout_send_len(&c->s) > 0, "slot %u: an empty send", slot);
    c->send_pending = true;
    c->send_batch = m->batch;
    c->s_zc = zc;
}

/* loop_send.c: the pack rule's count (it rides on the flush there). */
static void count_pack(struct sim *m)
{
    uint64_t floor = flow_pack_floor(&m->flow, m->log.vhead);
    uint32_t receivers = 0, within = 0;
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!live(c) || c->out.finishing)
            continue;
        bool in = c->out.vcursor >= floor;
        if (c->pack_exempt && !in)
            continue;
        c->pack_exempt = false;
        receivers++;
        within += in;
    }
    flow_pack_count(&m->flow, within, receivers);
}

static void flush_clients(struct sim *m)
{
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!live(c))
            continue;
        if (c->poll_armed)
            judge(m, i);
        else
            try_send(m, i);
    }
    count_pack(m);
}

/* loop_pack_tick (lifecycle.c's tick): a holding pack that did not move is suspended. */
static void pack_tick(struct sim *m)
{
    uint64_t pacer = 0, reach[MAXC];
    if (flow_pack_holds(&m->flow, m->log.vhead))
        count_pack(m);
    if (flow_pack_holds(&m->flow, m->log.vhead)) {
        size_t n = 0;
        for (uint32_t i = 0; i < MAXC; i++)
            if (live(&m->c[i]) && !m->c[i].out.finishing && !m->c[i].pack_exempt)
                reach[n++] = m->c[i].out.vcursor;
        if (n)
            pacer = flow_pack_pacer(reach, n);
    }
    flow_pack_tick(&m->flow, pacer, m->log.vhead);
}

static void client_free(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    /* Nothing of it outlives it: no send, remainder, zero-copy page, partial frame or stash. */
    CHECK(!c->out.inflight && !c->out.resid && c->out.zc_count == 0,
          "slot %u freed while "
          "fanout holds a send %d, a remainder %d or zero-copy pages %u",
          slot, c->out.inflight, c->out.resid != NULL, c->out.zc_count);
    CHECK(!c->in.partial.buf && !c->in.stash, "slot %u freed with a partial frame or a stash",
          slot);
    CHECK(!c->send_pending && !c->poll_armed && !c->recv_active && !c->recv_final_pending &&
              c->zc_n == 0,
          "slot %u freed with an operation in the kernel", slot);
    free(c->rxf);
    buf_free(&c->gen);
    memset(c, 0, sizeof(*c));
}

static void maybe_finish_close(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    if (!c->used || c->open || c->rx.armed || c->poll_armed || c->out.inflight)
        return;
    CHECK(fanout_release(&m->fo, &c->out), "fanout_release with no send in flight");
    if (c->out.zc_count)
        return; /* the loop resets the socket: the notifications come */
    client_free(m, slot);
}

static void begin_close(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    /* A publisher that left by itself (EOF) had every whole frame it sent relayed. */
    if (c->closed_eof && c->gen_appended + c->in.partial.len != c->gen_sent)
        FAIL("batch %u: slot %u closes after EOF with %llu of the %llu bytes it sent in the log",
             m->batch, slot, (unsigned long long)c->gen_appended, (unsigned long long)c->gen_sent);
    c->open = false;
    ingest_close(&m->in, &c->in);
    if (c->paused) { /* paused_remove */
        unsigned j = 0;
        for (unsigned i = 0; i < m->npaused; i++)
            if (m->paused[i] != slot)
                m->paused[j++] = m->paused[i];
        m->npaused = j;
        c->paused = false;
    }
    stop_reading(m, slot);
    if (c->poll_armed)
        c->poll_cancelled = true;
    maybe_finish_close(m, slot);
}

static void resume_paused(struct sim *m)
{
    unsigned n = m->npaused;
    for (unsigned k = 0; k < n && k < RESUME_PER_BATCH; k++) {
        uint32_t slot = m->paused[0];
        memmove(m->paused, m->paused + 1, (m->npaused - 1) * sizeof(m->paused[0]));
        m->npaused--;
        struct sclient *c = &m->c[slot];
        if (!live(c)) {
            c->paused = false;
            continue;
        }
        enum ingest_result r = ingest_resume(&m->in, &c->in, slot, &c->out);
        if (r == INGEST_PAUSED) {
            m->paused[m->npaused++] = slot;
            continue;
        }
        c->paused = false;
        ingest_outcome(m, slot, r, NULL, 0);
        if (live(c) && c->eof) {
            c->closed_eof = true;
            loop_doom(m, slot);
        } else if (live(c)) {
            recv_act(m, slot, recvctl_want(&c->rx, true));
        }
    }
}

static void rebuild_flow(struct sim *m)
{
    flow_reset(&m->flow);
    for (uint32_t i = 0; i < MAXC; i++)
        if (live(&m->c[i]))
            flow_advance(&m->flow, i, m->c[i].out.vcursor);
}

static void client_open(struct sim *m, uint32_t slot, bool publisher)
{
    struct sclient *c = &m->c[slot];
    memset(c, 0, sizeof(*c));
    c->used = c->open = true;
    c->publisher = publisher && !m->draining;
    c->rxf = malloc(m->P.max_frame + 8);
    if (!c->rxf)
        abort();
    fanout_join(&m->fo, &c->out, slot);
    flow_advance(&m->flow, slot, c->out.vcursor);
    c->join_frame = c->next_frame = m->nf;
    recv_act(m, slot, recvctl_want(&c->rx, true));
    m->joins++;
}

/* ---- what a client receives ---------------------------------------------------------------- */

static void rx_frame_done(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    size_t i = c->next_frame;
    for (; i < m->nf; i++) {
        if (!expected_for(m, slot, i))
            continue;
        if (m->flen[i] == c->rxf_len && memcmp(m->mbytes.p + m->fstart[i], c->rxf, c->rxf_len) == 0)
            break;
        if (!c->dropped)
            FAIL("batch %u: slot %u received a %zu-byte frame, expected frame %zu (%u bytes from "
                 "slot %u at %llu)",
                 m->batch, slot, c->rxf_len, i, m->flen[i], m->forigin[i],
                 (unsigned long long)m->fstart[i]);
    }
    if (i == m->nf)
        FAIL("batch %u: slot %u received a %zu-byte frame that is not a later frame of the log "
             "(dropped: %d)",
             m->batch, slot, c->rxf_len, c->dropped);
    c->next_frame = i + 1;
    c->rx_frames++;
    c->rxf_len = 0;
}

static void rx_take(struct sim *m, uint32_t slot, const uint8_t *p, size_t n)
{
    struct sclient *c = &m->c[slot];
    const size_t room = m->P.max_frame + 8;
    c->rx_bytes += n;
    while (n) {
        size_t take;
        if (m->P.framing == FRAMING_LINE) {
            const uint8_t *nl = memchr(p, '\n', n);
            take = nl ? (size_t)(nl - p) + 1 : n;
        } else if (c->rxf_len < FRAME_LEN32_HEADER) {
            take = min_u64(FRAME_LEN32_HEADER - c->rxf_len, n);
        } else {
            size_t want = frame_wire_len(FRAMING_LEN32, c->rxf, c->rxf_len);
            take = min_u64(want - c->rxf_len, n);
        }
        if (c->rxf_len + take > room)
            FAIL("batch %u: slot %u received a frame longer than any sent", m->batch, slot);
        memcpy(c->rxf + c->rxf_len, p, take);
        c->rxf_len += take;
        p += take;
        n -= take;
        size_t fl = frame_wire_len(m->P.framing, c->rxf, c->rxf_len);
        if (fl && fl == c->rxf_len)
            rx_frame_done(m, slot);
        else if (m->P.framing == FRAMING_LEN32 && fl > room)
            FAIL("batch %u: slot %u received a bad header", m->batch, slot);
    }
}

/* ---- completions --------------------------------------------------------------------------- */

static void on_send(struct sim *m, uint32_t slot, uint8_t how)
{
    struct sclient *c = &m->c[slot];
    CHECK(c->send_pending && c->out.inflight, "slot %u: a completion for no send", slot);
    c->send_pending = false;
    uint64_t space = m->P.sockbuf - (c->wpos - c->rpos);
    uint64_t take = min_u64(fanout_send_len(&c->s), space);
    if (how >= 200 && how < 254)
        take = take * (how - 200u) / 54u;
    int res = take ? (int)take : -EAGAIN;
    if (how == 254)
        res = -EAGAIN;
    if (how == 255 && c->open)
        res = -ECONNRESET; /* the peer went away */
    if (res > 0) {
        /* What the kernel copies now: the bytes must still be the ones planned. */
        size_t left = (size_t)res;
        for (unsigned i = 0; i < c->s.niov && left; i++) {
            size_t n = c->s.iov[i].iov_len < left ? c->s.iov[i].iov_len : left;
            rx_take(m, slot, c->s.iov[i].iov_base, n);
            left -= n;
        }
        c->wpos += (uint64_t)res;
    }
    if (c->s_zc && res > 0) { /* IORING_CQE_F_MORE: a notification follows */
        fanout_zc_pending(&c->out, c->out.inflight_start);
        c->zc_end[(c->zc_head + c->zc_n) % FANOUT_ZC_MAX] = c->wpos;
        c->zc_n++;
        m->zc_pending++;
    }
    uint64_t before = m->stats.deliveries;
    enum fanout_sent r = fanout_sent(&m->fo, &c->out, res);
    c->delivered += m->stats.deliveries - before;
    if (c->delivered > c->rx_frames)
        FAIL("batch %u: slot %u counted %llu deliveries, received %llu frames", m->batch, slot,
             (unsigned long long)c->delivered, (unsigned long long)c->rx_frames);
    if (!c->open) {
        maybe_finish_close(m, slot);
        return;
    }
    if (live(c))
        flow_advance(&m->flow, slot, c->out.vcursor);
    if (r == FANOUT_SENT_ERROR) {
        loop_doom(m, slot);
    } else if (r == FANOUT_SENT_SHORT) {
        m->shorts++;
        if (live(c)) {
            c->poll_armed = true;
            judge(m, slot);
        }
    } else if (r == FANOUT_SENT_PART) {
        if (live(c) && judge(m, slot))
            try_send(m, slot);
    } else {
        try_send(m, slot);
    }
}

static void on_notif(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    c->zc_head = (c->zc_head + 1) % FANOUT_ZC_MAX;
    c->zc_n--;
    fanout_zc_notified(&c->out);
    CHECK(c->out.zc_count == c->zc_n, "slot %u: fanout counts %u zero-copy sends, the kernel %u",
          slot, c->out.zc_count, c->zc_n);
    if (!c->open)
        maybe_finish_close(m, slot);
}

/* A recv completion: @more is IORING_CQE_F_MORE; @res bytes of its stream, 0 (EOF) or -errno. */
static void on_recv(struct sim *m, uint32_t slot, bool more, int res)
{
    struct sclient *c = &m->c[slot];
    recv_act(m, slot, recvctl_completion(&c->rx, more));
    if (!live(c))
        return;
    if (res <= 0) {
        if (res == 0 && (c->paused || ingest_waiting(&c->in))) {
            /* As loop.c: what it sent before leaving is relayed first. */
            c->eof = true;
            stop_reading(m, slot);
        } else if (res == 0) {
            c->closed_eof = true;
            loop_doom(m, slot);
        }
        return;
    }
    /* The receive buffer: exactly its length, so ASan sees a read past it. */
    uint8_t *p = malloc((size_t)res);
    if (!p)
        abort();
    memcpy(p, c->gen.p + c->gen_sent, (size_t)res);
    c->gen_sent += (uint64_t)res;
    size_t used = 0;
    enum ingest_result r;
    if (c->paused || ingest_waiting(&c->in))
        r = INGEST_PAUSED;
    else
        r = ingest_feed(&m->in, &c->in, slot, &c->out, p, (size_t)res, &used);
    ingest_outcome(m, slot, r, p + used, (size_t)res - used);
    free(p);
}

/* ---- events -------------------------------------------------------------------------------- */

enum ev_type {
    EV_BATCH,
    EV_RECV,
    EV_SEND,
    EV_POLL,
    EV_NOTIF,
    EV_RECV_END,
    EV_READ,
    EV_TOGGLE,
    EV_JOIN,
    EV_LEAVE,
};

static void run_event(struct sim *m, enum ev_type type, uint32_t slot, uint8_t a, uint8_t b)
{
    struct sclient *c = &m->c[slot];
    switch (type) {
    case EV_BATCH:
        break;
    case EV_SEND:
        /* A send prepared in this batch completes in a later one. */
        if (c->send_pending && c->send_batch < m->batch)
            on_send(m, slot, a);
        break;
    case EV_POLL:
        if (!c->used || !c->poll_armed)
            break;
        if (c->poll_cancelled) {
            c->poll_armed = c->poll_cancelled = false;
            maybe_finish_close(m, slot);
        } else if (m->P.sockbuf > c->wpos - c->rpos) {
            c->poll_armed = false;
            try_send(m, slot);
        }
        break;
    case EV_NOTIF:
        if (c->used && c->zc_n && (!c->open || c->rpos >= c->zc_end[c->zc_head]))
            on_notif(m, slot);
        break;
    case EV_RECV:
        if (!c->used || !c->recv_active || c->recv_final_pending)
            break;
        if (c->peer_closed) { /* EOF ends the multishot */
            c->recv_active = false;
            on_recv(m, slot, false, 0);
            break;
        }
        if (!c->publisher || m->batch_recvs >= m->P.recvs)
            break;
        {
            size_t n = 1 + a % m->P.recv_buf;
            if (!m->draining) {
                while (c->gen.len - c->gen_sent < n)
                    gen_frame(m, c, slot, b);
            }
            n = min_u64(n, c->gen.len - c->gen_sent);
            if (n) {
                m->batch_recvs++;
                on_recv(m, slot, true, (int)n);
            }
        }
        break;
    case EV_RECV_END:
        if (!c->used || !(c->recv_active || c->recv_final_pending))
            break;
        c->recv_active = c->recv_final_pending = false;
        on_recv(m, slot, false, -ECANCELED);
        if (!c->open)
            maybe_finish_close(m, slot);
        break;
    case EV_READ:
        if (!c->used || c->stopped)
            break;
        {
            uint64_t unread = c->wpos - c->rpos;
            c->rpos += a >= 128 || m->draining ? unread : min_u64(unread, (uint64_t)a * 8);
        }
        break;
    case EV_TOGGLE:
        if (live(c))
            c->stopped = !c->stopped;
        break;
    case EV_JOIN:
        if (!c->used)
            client_open(m, slot, a & 1);
        break;
    case EV_LEAVE: /* its FIN arrives with the next recv completion */
        if (live(c) && !c->peer_closed) {
            c->peer_closed = true;
            m->leaves++;
        }
        break;
    }
}

/* The end of a batch: after_batch, then the submit (cancellations, then recvs armed). */
static void after_batch(struct sim *m)
{
    if (flow_stale(&m->flow))
        rebuild_flow(m);
    if (m->npaused) {
        if (flow_pack_holds(&m->flow, m->log.vhead))
            count_pack(m);
        resume_paused(m);
    }
    if (m->head_moved) {
        m->head_moved = false;
        flush_clients(m);
    }
    /* loop_apply_verdicts */
    for (unsigned i = 0; i < m->ndoomed; i++) {
        uint32_t slot = m->doomed[i];
        if (m->c[slot].used && m->c[slot].open)
            begin_close(m, slot);
    }
    m->ndoomed = 0;
    if (flow_stale(&m->flow)) /* a leader went with the verdicts */
        rebuild_flow(m);
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        if (c->cancel_sent) {
            c->cancel_sent = false;
            if (c->recv_active) {
                c->recv_active = false;
                c->recv_final_pending = true;
            }
        }
        if (c->in_rearm) {
            c->in_rearm = false;
            if (live(c) && c->rx.want && !c->rx.armed) {
                CHECK(!(c->recv_active || c->recv_final_pending), "slot %u: two recvs", i);
                recvctl_armed(&c->rx);
                c->recv_active = true;
            }
        }
    }
}

static void check_batch(struct sim *m)
{
    uint64_t held = 0, stash = 0;
    /* A client whose sends complete whole is never judged; the send planned when the last one
     * completed covers the head of that moment, so it can be a batch behind: what this batch and
     * the one before appended (test_relay_model.c counts only this batch: its quota is larger
     * than a batch's appends, a fuzzed one need not be). */
    uint64_t ceiling = m->ceiling_fixed + m->batch_units + m->prev_units;
    CHECK(m->room_fail == 0, "a log sized like the loop's had no room for an append");
    for (uint32_t i = 0; i < MAXC; i++) {
        const struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        held += ingest_held(&c->in) + c->out.resid_len;
        stash += ingest_stashed(&c->in);
        /* recvctl agrees with the kernel. */
        if (c->rx.armed != (c->recv_active || c->recv_final_pending))
            FAIL("batch %u: slot %u: recvctl armed %d, kernel recv %d/%d", m->batch, i, c->rx.armed,
                 c->recv_active, c->recv_final_pending);
        if (live(c) && c->rx.want)
            CHECK(c->rx.armed, "slot %u wants its recv and it is not armed", i);
        uint64_t pin = fanout_pin(&m->fo, &c->out, c->open);
        uint64_t pinned = m->log.vhead - bcast_units_at(&m->log, pin);
        if (pinned > ceiling)
            FAIL("batch %u: slot %u pins %llu log units (charge %llu, %s), over the ceiling %llu "
                 "(quota %llu, this batch appended %llu, the one before %llu)",
                 m->batch, i, (unsigned long long)pinned,
                 (unsigned long long)fanout_charge(&m->fo, &c->out), c->open ? "open" : "closing",
                 (unsigned long long)ceiling, (unsigned long long)m->quota,
                 (unsigned long long)m->batch_units, (unsigned long long)m->prev_units);
        /* A frame being assembled, the recvs that raced a pause, a drop's remainder. */
        CHECK(ingest_held(&c->in) <= m->P.max_frame + 4, "slot %u holds a %llu-byte partial", i,
              (unsigned long long)ingest_held(&c->in));
        CHECK(ingest_stashed(&c->in) <= (uint64_t)m->P.recvs * m->P.recv_buf,
              "slot %u stashes %llu bytes", i, (unsigned long long)ingest_stashed(&c->in));
        CHECK(c->out.resid_len <= m->P.max_frame + 4, "slot %u: a %u-byte remainder", i,
              c->out.resid_len);
    }
    CHECK(m->held == held, "held_bytes %llu, the clients hold %llu", (unsigned long long)m->held,
          (unsigned long long)held);
    CHECK(m->stash == stash, "stash bytes %llu, the clients hold %llu",
          (unsigned long long)m->stash, (unsigned long long)stash);
    CHECK(m->batch_units <= m->batch_units_max, "a batch appended %llu units, at most %llu",
          (unsigned long long)m->batch_units, (unsigned long long)m->batch_units_max);
    /* The flow tracks receivers only: after the batch its leaders are live clients. */
    for (int k = 0; k < 2 && !flow_stale(&m->flow); k++) {
        uint32_t slot = m->flow.top[k].slot;
        if (slot != FLOW_NONE && (slot >= MAXC || !live(&m->c[slot])))
            FAIL("batch %u: the flow's leader %d is slot %u, which is %s", m->batch, k, slot,
                 slot < MAXC && m->c[slot].used ? "closing" : "gone");
    }
    /* The paused list names live, paused clients, each once. */
    for (unsigned k = 0; k < m->npaused; k++) {
        uint32_t slot = m->paused[k];
        CHECK(slot < MAXC && m->c[slot].used && m->c[slot].open && m->c[slot].paused,
              "paused entry %u is slot %u, which is not a paused open client", k, slot);
        for (unsigned j = 0; j < k; j++)
            CHECK(m->paused[j] != slot, "slot %u is paused twice", slot);
    }
}

static void end_batch(struct sim *m)
{
    /* Sends are MSG_DONTWAIT: one prepared in an earlier batch has completed by now (whole, if
     * the script did not say otherwise), as its completion comes with the next batch. */
    for (uint32_t i = 0; i < MAXC; i++)
        run_event(m, EV_SEND, i, 0, 0);
    if (m->batch % 16 == 0) /* the tick: its own completion, in some batch */
        pack_tick(m);
    after_batch(m);
    check_batch(m);
    m->batch++;
    m->prev_units = m->batch_units;
    m->batch_units = 0;
    m->batch_recvs = 0;
}

/* Nothing left anywhere: every stream in the log, every reader served, nothing held. */
static bool quiescent(const struct sim *m)
{
    for (uint32_t i = 0; i < MAXC; i++) {
        const struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        if (!c->open || c->send_pending || c->poll_armed || c->paused || c->zc_n ||
            ingest_waiting(&c->in) || c->wpos != c->rpos || c->gen_sent != c->gen.len ||
            c->in.partial.len || fanout_owed(&m->fo, &c->out))
            return false;
    }
    return true;
}

/* The drain: every peer reads everything, sends complete whole, publishers finish. */
static void drain(struct sim *m)
{
    m->draining = true;
    unsigned rr = 0;
    for (unsigned extra = 0; !quiescent(m); extra++) {
        if (extra >= DRAIN_BATCHES)
            FAIL("not quiescent after %u batches of draining", DRAIN_BATCHES);
        for (uint32_t i = 0; i < MAXC; i++) {
            struct sclient *c = &m->c[i];
            c->stopped = false;
            if (!c->used)
                continue;
            run_event(m, EV_READ, i, 255, 0);
            run_event(m, EV_SEND, i, 0, 0);
            run_event(m, EV_POLL, i, 0, 0);
            run_event(m, EV_NOTIF, i, 0, 0);
            if (c->used && c->recv_final_pending)
                run_event(m, EV_RECV_END, i, 0, 0);
            if (c->used && c->peer_closed && c->recv_active)
                run_event(m, EV_RECV, i, 0, 0);
        }
        for (unsigned k = 0; k < MAXC && m->batch_recvs < m->P.recvs; k++) {
            uint32_t i = rr++ % MAXC;
            run_event(m, EV_RECV, i, (uint8_t)(m->P.recv_buf - 1), 0);
        }
        end_batch(m);
    }
}

static void final_checks(struct sim *m)
{
    uint64_t delivered = 0;
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        delivered += c->delivered;
        CHECK(c->gen_appended == c->gen.len, "slot %u: %llu of its %zu bytes in the log", i,
              (unsigned long long)c->gen_appended, c->gen.len);
        CHECK(c->rxf_len == 0, "slot %u holds a torn frame", i);
        uint64_t due = 0;
        for (size_t f = c->join_frame; f < m->nf; f++)
            due += expected_for(m, i, f);
        /* (A dropped client may have lost every frame after its last one: a drop keeps the
         * newest frames up to keep_on_drop units, which can be less than one frame; the counts
         * below cover it.) */
        for (size_t f = c->next_frame; f < m->nf && !c->dropped; f++)
            if (expected_for(m, i, f))
                FAIL("slot %u never received frame %zu (of %zu; dropped %d: received %llu, "
                     "%llu dropped, of %llu due since frame %llu)",
                     i, f, m->nf, c->dropped, (unsigned long long)c->rx_frames,
                     (unsigned long long)c->out.frames_dropped, (unsigned long long)due,
                     (unsigned long long)c->join_frame);
        if (!c->dropped) {
            CHECK(c->rx_frames == due, "slot %u received %llu frames of %llu", i,
                  (unsigned long long)c->rx_frames, (unsigned long long)due);
            CHECK(c->out.frames_dropped == 0, "slot %u counted drops", i);
            CHECK(c->delivered == c->rx_frames, "slot %u: %llu deliveries, %llu frames", i,
                  (unsigned long long)c->delivered, (unsigned long long)c->rx_frames);
        } else if (c->rx_frames + c->out.frames_dropped != due) {
            FAIL("slot %u received %llu frames and %llu were dropped, of %llu due", i,
                 (unsigned long long)c->rx_frames, (unsigned long long)c->out.frames_dropped,
                 (unsigned long long)due);
        }
    }
    CHECK(m->stats.frames_in == m->nf, "frames_in %llu, the model %zu",
          (unsigned long long)m->stats.frames_in, m->nf);
    CHECK(m->stats.deliveries >= delivered, "deliveries");
}

/* ---- the run ------------------------------------------------------------------------------- */

static void params_from(struct params *p, const uint8_t *h)
{
    memset(p, 0, sizeof(*p));
    p->framing = h[0] & 1 ? FRAMING_LEN32 : FRAMING_LINE;
    p->echo = h[0] & 2;
    p->policy = h[0] & 4 ? SLOW_DROP : SLOW_DISCONNECT;
    p->zerocopy = h[0] & 8;
    p->max_frame = 2 + h[1] % 199;
    p->max_queue = p->max_frame + 8ull * h[2];
    p->pace_window = 1 + (uint64_t)h[3] * p->max_queue / 255;
    p->sockbuf = 16 + 16u * h[4];
    p->recv_buf = 1 + h[5];
    p->recvs = 1 + h[6] % 12;
    p->clients = h[7] % (MAXC + 1);
    p->publishers = h[8];
}

static void sim_init(struct sim *m, const struct params *p)
{
    memset(m, 0, sizeof(*m));
    m->P = *p;
    m->noise = 0x9e3779b97f4a7c15ull;
    /* loop_setup.c: quota_for, the pace, log_units_for (with this model's batch). */
    m->quota = p->max_queue + FRAME_LEN32_HEADER;
    m->pace = p->pace_window < p->max_queue ? p->pace_window : p->max_queue;
    uint64_t frame = p->max_frame + FRAME_LEN32_HEADER + BCAST_REC_UNITS;
    m->batch_units_max =
        (uint64_t)p->recvs * (p->recv_buf + 2 * BCAST_REC_UNITS) +
        (uint64_t)MAXC * ((uint64_t)p->recvs * p->recv_buf + frame + 2 * BCAST_REC_UNITS);
    m->ceiling_fixed = m->quota + 2 * frame + (p->zerocopy ? FANOUT_ZC_PIN : 0);
    /* loop.c's race_slack_for: one batch of recvs, but never past the quota. */
    uint64_t slack = (uint64_t)p->recvs * (p->recv_buf + BCAST_REC_UNITS);
    uint64_t room = m->quota > m->pace ? m->quota - m->pace : 0;
    m->race_slack = slack < room ? slack : room;
    m->log_units = m->ceiling_fixed + m->batch_units_max;
    uint64_t log_bytes = m->log_units + BCAST_REC_MAX_LEN; /* see test_relay_model.c */
    CHECK(bcast_init(&m->log, log_bytes, m->log_units / BCAST_REC_UNITS + 1) == 0, "bcast_init");
    /* loop.c: the pack window, a quarter of the quota and never under the pace window. */
    flow_init(&m->flow, m->pace, m->quota / 4 > m->pace ? m->quota / 4 : m->pace);
    m->fo = (struct fanout){
        .log = &m->log,
        .framing = p->framing,
        .echo = p->echo,
        .policy = p->policy,
        .quota = m->quota,
        .keep_on_drop = p->max_queue / 2,
        .stats = &m->stats,
        .held_bytes = &m->held,
    };
    m->in = (struct ingest){
        .log = &m->log,
        .flow = &m->flow,
        .fanout = &m->fo,
        .framing = p->framing,
        .echo = p->echo,
        .max_frame = p->max_frame,
        .pace = m->pace,
        .race_slack = m->race_slack,
        .stats = &m->stats,
        .held_bytes = &m->held,
        .stash_bytes = &m->stash,
        .make_room = make_room,
        .on_frames = on_frames,
        .ctx = m,
    };
    for (uint32_t i = 0; i < p->clients; i++)
        client_open(m, i, p->publishers >> i & 1);
}

static void sim_destroy(struct sim *m)
{
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        ingest_close(&m->in, &c->in);
        c->out.inflight = false; /* as loop_destroy: the ring is gone */
        CHECK(fanout_release(&m->fo, &c->out), "fanout_release");
        free(c->rxf);
        buf_free(&c->gen);
    }
    CHECK(m->held == 0 && m->stash == 0, "held %llu stash %llu after everything closed",
          (unsigned long long)m->held, (unsigned long long)m->stash);
    bcast_destroy(&m->log);
    free(m->mbytes.p);
    free(m->fstart);
    free(m->flen);
    free(m->forigin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER)
        return 0;
    static struct sim sim;
    struct sim *m = &sim;
    struct params p;
    params_from(&p, data);
    sim_init(m, &p);
    current = m;
    end_batch(m); /* the first submit arms the recvs */
    for (size_t i = HEADER; i + 3 <= size; i += 3) {
        unsigned op = data[i] & 0x0f;
        uint32_t slot = (data[i] >> 4) & (MAXC - 1);
        if (op == EV_BATCH || op > EV_LEAVE)
            end_batch(m);
        else
            run_event(m, (enum ev_type)op, slot, data[i + 1], data[i + 2]);
    }
    end_batch(m);
    drain(m);
    final_checks(m);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr,
                "%u batches, %zu frames, %llu bytes; joins %u leaves %u cuts %u drops %u "
                "pauses %u shorts %u zc %u\n",
                m->batch, m->nf, (unsigned long long)m->log.head, m->joins, m->leaves, m->cuts,
                m->drops, m->pauses, m->shorts, m->zc_pending);
    sim_destroy(m);
    current = NULL;
    return 0;
}
