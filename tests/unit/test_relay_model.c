/*
 * A randomized model of the relay: bcast, flow, fanout, ingest and recvctl wired as src/loop.c
 * wires them (on_recv, ingest_outcome, resume_paused, flush_clients, judge, loop_try_send,
 * on_send, make_room, loop_doom, begin_close, maybe_finish_close, rebuild_flow), driven by
 * simulated completions in batches: recvs of random chunks of each publisher's stream, sends that
 * take what a simulated socket buffer has room for, POLLOUT, zero-copy notifications, multishot
 * recvs that end by themselves or are cancelled, readers that stop and start, clients that join
 * and leave, and pub-only clients (muted: fanout_mute, never a receiver) among them.
 *
 * Checked against a model (every frame the log got, in order, with its origin):
 *  - a client never dropped receives exactly the frames appended after it joined (its own left
 *    out when echo is off), whole and in order, and a pub-only client nothing at all; a dropped one
 * receives a subsequence of whole frames, and what it received plus what was counted dropped is
 * everything;
 *  - every publisher's frames reach the log exactly as it sent them, and only while it is open;
 *  - whenever ingest appends for origin k, a receiver other than k (any, with echo; never a
 *    pub-only client) was within the pace window of the head before the append, or there was no
 *    receiver;
 *  - after every batch, what any client pins stays under the loop's ceiling (loop_setup.c): quota
 *    + 2 * (max_frame + 4 + BCAST_REC_UNITS) + what one batch appends (+ FANOUT_ZC_PIN with
 *    zero-copy), and held_bytes is exactly what the clients hold outside the log;
 *  - a log sized like the loop's never refuses an append for lack of room;
 *  - a cut or dropped client was over its quota (or pinned too much through zero-copy), and a
 *    dropped one is within its quota again;
 *  - recvctl's idea of the multishot recv matches the kernel's, and a wanted recv is armed;
 *  - after every batch the flow's two leaders are live receiving clients (or the flow is stale);
 *  - at the end every reader drains, every publisher's stream is in the log, nothing is held.
 *
 * Two scripted cases replay, event by event, the orders in which the flow kept counting a client
 * that had left.
 *
 * To see what happened before a failure: MODEL_TRACE=<slot> prints that client's plans, send
 * results and verdicts; MODEL_TRACE=all prints everyone's, and the state whenever the log is full.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

#include "guard_page.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint64_t rnd_below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

static bool chance(unsigned per_mille)
{
    return rnd_below(1000) < per_mille;
}

static int trace_slot = -1; /* MODEL_TRACE: a slot, or -2 for all */
#define TRACE(m, slot, ...)                                                                        \
    do {                                                                                           \
        if ((int)(slot) == trace_slot || trace_slot == -2) {                                       \
            fprintf(stderr, "[%u] s%d ", (m)->batch, (int)(slot));                                 \
            fprintf(stderr, __VA_ARGS__);                                                          \
        }                                                                                          \
    } while (0)

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
}

static void buf_put(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
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
    const char *name;
    uint64_t seed;
    unsigned batches;
    enum framing framing;
    bool echo;
    enum slow_policy policy;
    bool zerocopy;
    uint64_t max_frame; /* line: counts the '\n'; len32: the payload */
    uint64_t
        min_payload; /* 0: tiny frames (1-2 bytes of line, 0-1 of payload) a quarter of the time */
    uint64_t max_queue;
    uint64_t pace_window;
    uint32_t sockbuf;  /* a client's socket buffer */
    uint32_t recv_buf; /* bytes at most per recv completion */
    unsigned recvs;    /* recv completions at most per batch */
    unsigned clients;  /* open at the start */
    bool steady;       /* no churn: every client publishes and reads fast, none stops or leaves */
};

/* ---- the simulated relay ------------------------------------------------------------------- */

enum speed { SPEED_FAST, SPEED_MEDIUM, SPEED_SLOW };

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
    bool pub_only; /* its listener's role: publishes, never receives (muted in fanout) */
    bool stopped;  /* does not read its socket */
    enum speed speed;
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
    /* the model: every byte the log got (by offset) and every frame */
    struct buf mbytes;
    uint64_t *fstart;
    uint32_t *flen, *forigin;
    size_t nf, fcap;
    uint64_t last_vhead;
    uint64_t batch_units; /* log units appended in this batch */
    uint64_t max_pinned;
    /* what happened, to check the run exercised everything */
    unsigned room_fail, cuts, drops, joins, leaves, pauses, shorts, zc_pending, notified, rx_ends,
        cancels, resumes, racing, pack_holds, pack_suspends, pub_onlys;
    uint64_t pack_scratch[MAXC];
};

static inline bool live(const struct sclient *c)
{
    return c->used && c->open && !c->doomed;
}

/* ---- the model's frames -------------------------------------------------------------------- */

static void model_frame(struct sim *m, uint64_t off, uint32_t len, uint32_t origin)
{
    if (m->nf == m->fcap) {
        m->fcap = m->fcap ? 2 * m->fcap : 4096;
        m->fstart = realloc(m->fstart, m->fcap * sizeof(*m->fstart));
        m->flen = realloc(m->flen, m->fcap * sizeof(*m->flen));
        m->forigin = realloc(m->forigin, m->fcap * sizeof(*m->forigin));
        assert_true(m->fstart && m->flen && m->forigin);
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

static void gen_frame(struct sim *m, struct sclient *c, uint32_t slot)
{
    uint8_t f[1 << 12];
    uint64_t maxp = m->P.framing == FRAMING_LINE ? m->P.max_frame - 1 : m->P.max_frame;
    assert_true(maxp + 4 <= sizeof(f));
    uint64_t payload;
    if (m->P.min_payload == 0 && chance(250))
        payload = rnd_below(2);
    else
        payload = m->P.min_payload + rnd_below(maxp - m->P.min_payload + 1);
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
        uint8_t b = i < (uint64_t)tl ? (uint8_t)tag[i] : (uint8_t)rnd();
        if (m->P.framing == FRAMING_LINE && b == '\n')
            b = 'N';
        f[n++] = b;
    }
    if (m->P.framing == FRAMING_LINE)
        f[n++] = '\n';
    buf_put(&c->gen, f, n);
    c->gen_frames++;
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
                "  slot %u: open %d doomed %d pub %d/%d stopped %d speed %d paused %d poll %d "
                "send %d (batch %u, zc %d) cursor %llu vcursor %llu charge %llu zc %u "
                "dropped %d unread %llu\n",
                i, c->open, c->doomed, c->publisher, c->pub_only, c->stopped, c->speed, c->paused,
                c->poll_armed, c->send_pending, c->send_batch, c->s_zc,
                (unsigned long long)c->out.cursor, (unsigned long long)c->out.vcursor,
                (unsigned long long)fanout_charge(&m->fo, &c->out), c->out.zc_count, c->dropped,
                (unsigned long long)(c->wpos - c->rpos));
    }
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
    if (!ok) {
        m->room_fail++;
        if (trace_slot == -2) {
            fprintf(stderr, "full: len %zu keep %llu records %llu of %llu\n", len,
                    (unsigned long long)keep,
                    (unsigned long long)(m->log.rec_head - m->log.rec_tail),
                    (unsigned long long)m->log.rec_cap);
            dump(m);
        }
    }
    return ok;
}

static void on_frames(void *ctx, uint32_t origin, const uint8_t *p, size_t len)
{
    struct sim *m = ctx;
    m->head_moved = true;
    assert_true(origin < MAXC);
    struct sclient *c = &m->c[origin];
    /* Only an open client publishes (bug 7), and exactly what it sent, in order. */
    if (!c->used || !c->open)
        fail_msg("batch %u: append of %zu bytes for slot %u, which is closed", m->batch, len,
                 origin);
    assert_true(c->gen_appended + len <= c->gen_sent);
    assert_memory_equal(c->gen.p + c->gen_appended, p, len);
    c->gen_appended += len;
    uint64_t at = m->log.head - len;
    assert_int_equal(at, m->mbytes.len);
    buf_put(&m->mbytes, p, len);
    for (size_t off = 0; off < len;) {
        size_t fl = frame_wire_len(m->P.framing, p + off, len - off);
        assert_true(fl > 0 && off + fl <= len);
        model_frame(m, at + off, (uint32_t)fl, origin);
        off += fl;
    }
    /* The flow rule, from the receivers' true positions before the append: a publisher is read
     * while a receiver is within the pace window; bytes that raced a pause may go up to
     * race_slack past it, and anything goes to a receiver that is caught up. A doomed client is
     * no receiver once the flow was rebuilt without it; until then (a leader doomed in this
     * batch makes the flow stale) it may still lead. */
    uint64_t units = m->log.vhead - m->last_vhead, before = m->last_vhead;
    bool any = false, ok = false;
    uint64_t best = 0;
    for (uint32_t i = 0; i < MAXC; i++) {
        const struct sclient *r = &m->c[i];
        if (!r->used || !r->open || r->pub_only || (!m->P.echo && i == origin))
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
        dump(m);
    if (any && !ok)
        fail_msg("batch %u: slot %u appended %llu units at vhead %llu, but its best receiver was "
                 "at %llu (pace %llu, race slack %llu)",
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
    if (a == RECVCTL_CANCEL) {
        c->cancel_sent = true;
        m->cancels++;
    } else if (a == RECVCTL_ARM) {
        c->in_rearm = true;
    }
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
        fail_msg("batch %u: slot %u: ingest result %d", m->batch, slot, r);
    }
}

/* The verdict's checks: who is cut or dropped was over its quota. */
static bool judge(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    uint64_t charge = fanout_charge(&m->fo, &c->out);
    bool zc = c->out.zc_count > 0;
    enum fanout_verdict v = fanout_judge(&m->fo, &c->out, slot);
    TRACE(m, slot, "judge %d: charge %llu -> %llu inflight %d\n", v, (unsigned long long)charge,
          (unsigned long long)fanout_charge(&m->fo, &c->out), c->out.inflight);
    switch (v) {
    case FANOUT_OK:
        if (!c->out.inflight && fanout_charge(&m->fo, &c->out) > m->quota)
            fail_msg("batch %u: slot %u judged OK at %llu units, quota %llu", m->batch, slot,
                     (unsigned long long)fanout_charge(&m->fo, &c->out),
                     (unsigned long long)m->quota);
        return true;
    case FANOUT_DROPPED:
        assert_int_equal(m->P.policy, SLOW_DROP);
        assert_true(charge > m->quota);
        m->drops++;
        c->dropped = true;
        c->pack_exempt = true;
        flow_advance(&m->flow, slot, c->out.vcursor);
        if (fanout_charge(&m->fo, &c->out) > m->quota)
            fail_msg("batch %u: slot %u dropped from %llu to %llu units, still over its quota "
                     "%llu (%llu bytes, %llu frames kept)",
                     m->batch, slot, (unsigned long long)charge,
                     (unsigned long long)fanout_charge(&m->fo, &c->out),
                     (unsigned long long)m->quota,
                     (unsigned long long)(m->log.head - c->out.cursor),
                     (unsigned long long)(m->log.frames - c->out.seq));
        return true;
    case FANOUT_CUT: /* after a drop, what zero-copy still pins counts */
        assert_true(charge > m->quota);
        assert_true(m->P.policy == SLOW_DISCONNECT || zc);
        m->cuts++;
        loop_doom(m, slot);
        return false;
    case FANOUT_NOMEM:
    case FANOUT_FINISHED:
        fail_msg("batch %u: slot %u: verdict %d", m->batch, slot, v);
    }
    return true;
}

static void try_send(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    if (!live(c) || c->poll_armed || c->out.inflight)
        return;
    assert_false(c->send_pending);
    bool zc;
    uint64_t vbefore = c->out.vcursor;
    bool planned = fanout_plan(&m->fo, &c->out, slot, m->P.zerocopy, 0, &c->s, &zc);
    if (c->out.vcursor != vbefore)
        flow_advance(&m->flow, slot, c->out.vcursor);
    if (planned && c->pub_only)
        fail_msg("batch %u: slot %u is pub-only and was planned a send", m->batch, slot);
    if (!planned)
        return;
    assert_true((uint32_t)fanout_send_len(&c->s) > 0);
    c->send_pending = true;
    c->send_batch = m->batch;
    c->s_zc = zc;
    TRACE(m, slot, "plan %u bytes at %llu resid %d; charge %llu head %llu\n",
          (uint32_t)fanout_send_len(&c->s),
          (unsigned long long)((const uint8_t *)c->s.iov[0].iov_base - m->log.base),
          c->s.from_resid, (unsigned long long)fanout_charge(&m->fo, &c->out),
          (unsigned long long)m->log.head);
}

/* loop_send.c: the pack rule's count (it rides on the flush there). */
static void count_pack(struct sim *m)
{
    uint64_t floor = flow_pack_floor(&m->flow, m->log.vhead);
    uint32_t receivers = 0, within = 0;
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!live(c) || c->out.finishing || c->pub_only)
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
    uint64_t pacer = 0;
    if (flow_pack_holds(&m->flow, m->log.vhead))
        count_pack(m);
    bool held = flow_pack_holds(&m->flow, m->log.vhead);
    if (held) {
        size_t n = 0;
        for (uint32_t i = 0; i < MAXC; i++)
            if (live(&m->c[i]) && !m->c[i].out.finishing && !m->c[i].pack_exempt &&
                !m->c[i].pub_only)
                m->pack_scratch[n++] = m->c[i].out.vcursor;
        if (n)
            pacer = flow_pack_pacer(m->pack_scratch, n);
    }
    flow_pack_tick(&m->flow, pacer, m->log.vhead);
    m->pack_suspends += held && !flow_pack_holds(&m->flow, m->log.vhead);
}

static void client_free(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    free(c->rxf);
    buf_free(&c->gen);
    memset(c, 0, sizeof(*c));
}

static void maybe_finish_close(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    if (!c->used || c->open || c->rx.armed || c->poll_armed || c->out.inflight)
        return;
    assert_true(fanout_release(&m->fo, &c->out));
    if (c->out.zc_count)
        return; /* the loop resets the socket: the notifications come */
    client_free(m, slot);
}

static void begin_close(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    /* A publisher that left by itself (EOF) had every whole frame it sent relayed. */
    if (c->closed_eof && c->gen_appended + c->in.partial.len != c->gen_sent)
        fail_msg("batch %u: slot %u closes after EOF with %llu of the %llu bytes it sent in the "
                 "log (%u assembling, waiting %d)",
                 m->batch, slot, (unsigned long long)c->gen_appended,
                 (unsigned long long)c->gen_sent, c->in.partial.len, ingest_waiting(&c->in));
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
        m->resumes++;
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
        if (live(&m->c[i]) && !m->c[i].pub_only)
            flow_advance(&m->flow, i, m->c[i].out.vcursor);
}

static void client_open(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    assert_false(c->used);
    memset(c, 0, sizeof(*c));
    c->used = c->open = true;
    c->publisher = m->draining ? false : chance(600);
    c->speed = (enum speed)rnd_below(3);
    /* Slots 0 and 1 stay a publisher and a fast reader (sim_init): pub-only ones come after. */
    c->pub_only = slot >= 2 && !m->draining && chance(150);
    if (c->pub_only)
        c->publisher = true;
    if (m->P.steady) {
        c->publisher = true;
        c->pub_only = false;
        c->speed = SPEED_FAST;
    }
    c->rxf = malloc(m->P.max_frame + 8);
    assert_non_null(c->rxf);
    fanout_join(&m->fo, &c->out, slot);
    /* As loop_conn_open: a pub-only client is muted and never in the flow. */
    if (c->pub_only) {
        fanout_mute(&c->out);
        m->pub_onlys++;
    } else {
        flow_advance(&m->flow, slot, c->out.vcursor);
    }
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
            fail_msg("batch %u: slot %u received a %zu-byte frame, expected frame %zu "
                     "(%u bytes from slot %u at %llu)",
                     m->batch, slot, c->rxf_len, i, m->flen[i], m->forigin[i],
                     (unsigned long long)m->fstart[i]);
    }
    if (i == m->nf)
        fail_msg("batch %u: slot %u received a %zu-byte frame that is not a later frame of the "
                 "log (dropped: %d)",
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
            fail_msg("batch %u: slot %u received a frame longer than any sent", m->batch, slot);
        memcpy(c->rxf + c->rxf_len, p, take);
        c->rxf_len += take;
        p += take;
        n -= take;
        size_t fl = frame_wire_len(m->P.framing, c->rxf, c->rxf_len);
        if (fl && fl == c->rxf_len)
            rx_frame_done(m, slot);
        else if (m->P.framing == FRAMING_LEN32 && fl > room)
            fail_msg("batch %u: slot %u received a bad header", m->batch, slot);
    }
}

/* ---- completions --------------------------------------------------------------------------- */

static void on_send(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    assert_true(c->send_pending && c->out.inflight);
    c->send_pending = false;
    uint64_t space = m->P.sockbuf - (c->wpos - c->rpos);
    uint64_t take = min_u64((uint32_t)fanout_send_len(&c->s), space);
    if (!m->P.steady && chance(300))
        take = rnd_below(take + 1);
    int res = take ? (int)take : -EAGAIN;
    if (c->open && !m->P.steady && chance(1))
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
    TRACE(m, slot, "sent %d of %u: %d; charge %llu\n", res, (uint32_t)fanout_send_len(&c->s), r,
          (unsigned long long)fanout_charge(&m->fo, &c->out));
    c->delivered += m->stats.deliveries - before;
    if (c->delivered > c->rx_frames)
        fail_msg("batch %u: slot %u counted %llu deliveries, received %llu frames", m->batch, slot,
                 (unsigned long long)c->delivered, (unsigned long long)c->rx_frames);
    if (!c->open) {
        maybe_finish_close(m, slot);
        return;
    }
    /* As loop.c's on_send: the flow hears of the new position, unless the connection was
     * doomed earlier in this batch (see test_relay_model_publisher_alone_after_readers_leave). */
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
    assert_true(c->zc_n > 0);
    c->zc_head = (c->zc_head + 1) % FANOUT_ZC_MAX;
    c->zc_n--;
    fanout_zc_notified(&c->out);
    assert_int_equal(c->out.zc_count, c->zc_n);
    m->notified++;
    if (!c->open)
        maybe_finish_close(m, slot);
}

/* A recv completion: @more is IORING_CQE_F_MORE; @res bytes of its stream, 0 (EOF) or -errno. */
static void on_recv(struct sim *m, uint32_t slot, bool more, int res)
{
    struct sclient *c = &m->c[slot];
    recv_act(m, slot, recvctl_completion(&c->rx, more));
    if (!more)
        m->rx_ends++;
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
    const uint8_t *p = guarded(c->gen.p + c->gen_sent, (size_t)res);
    c->gen_sent += (uint64_t)res;
    size_t used = 0;
    enum ingest_result r;
    if (c->paused || ingest_waiting(&c->in)) {
        r = INGEST_PAUSED;
        m->racing++;
    } else {
        r = ingest_feed(&m->in, &c->in, slot, &c->out, p, (size_t)res, &used);
    }
    ingest_outcome(m, slot, r, p + used, (size_t)res - used);
}

/* Bytes a publisher sends in one recv: a chunk of its stream (frames cut anywhere). */
static size_t recv_chunk(struct sim *m, uint32_t slot)
{
    struct sclient *c = &m->c[slot];
    size_t n = 1 + rnd_below(m->P.recv_buf);
    if (!m->draining) {
        while (c->gen.len - c->gen_sent < n)
            gen_frame(m, c, slot);
    }
    return min_u64(n, c->gen.len - c->gen_sent);
}

/* ---- one batch ----------------------------------------------------------------------------- */

enum ev_type {
    EV_SEND,
    EV_POLL,
    EV_NOTIF,
    EV_RECV,
    EV_RECV_END, /* the multishot ends: by itself (ENOBUFS) or the cancellation landed */
    EV_READ,
    EV_TOGGLE,
    EV_JOIN,
    EV_LEAVE,
};

struct ev {
    enum ev_type type;
    uint32_t slot;
};

static void run_event(struct sim *m, struct ev e)
{
    struct sclient *c = &m->c[e.slot];
    switch (e.type) {
    case EV_SEND:
        if (c->send_pending)
            on_send(m, e.slot);
        break;
    case EV_POLL:
        if (!c->used || !c->poll_armed)
            break;
        if (c->poll_cancelled) {
            c->poll_armed = c->poll_cancelled = false;
            maybe_finish_close(m, e.slot);
        } else if (m->P.sockbuf > c->wpos - c->rpos) {
            c->poll_armed = false;
            try_send(m, e.slot);
        }
        break;
    case EV_NOTIF:
        if (c->used && c->zc_n && (!c->open || c->rpos >= c->zc_end[c->zc_head]))
            on_notif(m, e.slot);
        break;
    case EV_RECV:
        if (!c->used || !c->recv_active || c->recv_final_pending)
            break;
        if (c->peer_closed) { /* EOF ends the multishot */
            c->recv_active = false;
            on_recv(m, e.slot, false, 0);
            break;
        }
        {
            size_t n = recv_chunk(m, e.slot);
            if (n)
                on_recv(m, e.slot, true, (int)n);
        }
        break;
    case EV_RECV_END:
        if (!c->used || !(c->recv_active || c->recv_final_pending))
            break;
        c->recv_active = c->recv_final_pending = false;
        on_recv(m, e.slot, false, -ECANCELED);
        if (!c->open)
            maybe_finish_close(m, e.slot);
        break;
    case EV_READ:
        if (!c->used || c->stopped)
            break;
        {
            uint64_t unread = c->wpos - c->rpos;
            uint64_t n = unread;
            if (!m->draining && c->speed == SPEED_MEDIUM)
                n = rnd_below(unread + 1);
            else if (!m->draining && c->speed == SPEED_SLOW)
                n = min_u64(unread, rnd_below(m->P.sockbuf / 8));
            c->rpos += n;
        }
        break;
    case EV_TOGGLE:
        if (live(c))
            c->stopped = !c->stopped;
        break;
    case EV_JOIN:
        if (!c->used)
            client_open(m, e.slot);
        break;
    case EV_LEAVE: /* its FIN arrives with the next recv completion */
        if (live(c) && !c->peer_closed) {
            m->leaves++;
            c->peer_closed = true;
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
        /* The submit: a cancellation ends the recv if it is still going (its last completion
         * comes next batch), else finds nothing. Then the recvs to arm. */
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
                assert_false(c->recv_active || c->recv_final_pending); /* never two */
                recvctl_armed(&c->rx);
                c->recv_active = true;
            }
        }
    }
}

static uint64_t client_pinned(const struct sim *m, const struct sclient *c)
{
    uint64_t pin = fanout_pin(&m->fo, &c->out, c->open);
    return m->log.vhead - bcast_units_at(&m->log, pin);
}

static void check_batch(struct sim *m)
{
    uint64_t held = 0, stash = 0;
    uint64_t ceiling = m->ceiling_fixed + m->batch_units;
    for (uint32_t i = 0; i < MAXC; i++) {
        const struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        held += ingest_held(&c->in) + c->out.resid_len;
        stash += ingest_stashed(&c->in);
        /* recvctl agrees with the kernel. */
        if (c->rx.armed != (c->recv_active || c->recv_final_pending))
            fail_msg("batch %u: slot %u: recvctl armed %d, kernel recv %d/%d", m->batch, i,
                     c->rx.armed, c->recv_active, c->recv_final_pending);
        /* Wanted and not paused by anyone: reading (or about to be, when its end comes). */
        if (live(c) && c->rx.want)
            assert_true(c->rx.armed);
        uint64_t pinned = client_pinned(m, c);
        if (pinned > m->max_pinned)
            m->max_pinned = pinned;
        if (pinned > ceiling)
            dump(m);
        if (pinned > ceiling)
            fail_msg("batch %u: slot %u pins %llu log units (charge %llu, %s), over the ceiling "
                     "%llu (quota %llu, this batch appended %llu)",
                     m->batch, i, (unsigned long long)pinned,
                     (unsigned long long)fanout_charge(&m->fo, &c->out),
                     c->open ? "open" : "closing", (unsigned long long)ceiling,
                     (unsigned long long)m->quota, (unsigned long long)m->batch_units);
        /* A frame being assembled, and the recvs that raced a pause. */
        assert_true(ingest_held(&c->in) <= m->P.max_frame + 4);
        assert_true(ingest_stashed(&c->in) <= (uint64_t)m->P.recvs * m->P.recv_buf);
        assert_true(c->out.resid_len <= m->P.max_frame + 4);
    }
    assert_int_equal(m->held, held);
    assert_int_equal(m->stash, stash);
    assert_true(m->batch_units <= m->batch_units_max);
    /* The flow tracks receivers only: after the batch, its leaders are live clients (a leader
     * that left makes it stale, and it is rebuilt before the next batch's questions). */
    for (int k = 0; k < 2 && !flow_stale(&m->flow); k++) {
        uint32_t slot = m->flow.top[k].slot;
        if (slot != FLOW_NONE && (slot >= MAXC || !live(&m->c[slot]) || m->c[slot].pub_only)) {
            dump(m);
            fail_msg("batch %u: the flow's leader %d is slot %u, which is %s", m->batch, k, slot,
                     slot < MAXC && m->c[slot].pub_only ? "pub-only"
                     : slot < MAXC && m->c[slot].used   ? "closing"
                                                        : "gone");
        }
    }
}

static void run_batch(struct sim *m)
{
    struct ev evs[8 * MAXC + 64];
    unsigned n = 0;
    m->batch_units = 0;
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!c->used) {
            if (!m->draining && !m->P.steady && chance(10))
                evs[n++] = (struct ev){EV_JOIN, i};
            continue;
        }
        if (c->send_pending && c->send_batch < m->batch)
            evs[n++] = (struct ev){EV_SEND, i};
        if (c->poll_armed)
            evs[n++] = (struct ev){EV_POLL, i};
        if (c->zc_n && (!c->open || chance(800)))
            evs[n++] = (struct ev){EV_NOTIF, i};
        if (c->recv_final_pending || (c->recv_active && !m->P.steady && chance(5)))
            evs[n++] = (struct ev){EV_RECV_END, i};
        evs[n++] = (struct ev){EV_READ, i};
        if (c->peer_closed && c->recv_active)
            evs[n++] = (struct ev){EV_RECV, i};
        if (!m->draining && !m->P.steady && chance(15))
            evs[n++] = (struct ev){EV_TOGGLE, i};
        if (!m->draining && !m->P.steady && chance(3))
            evs[n++] = (struct ev){EV_LEAVE, i};
    }
    for (unsigned k = 0; k < m->P.recvs; k++) {
        uint32_t i = (uint32_t)rnd_below(MAXC);
        if (m->c[i].used && m->c[i].publisher)
            evs[n++] = (struct ev){EV_RECV, i};
    }
    assert_true(n <= sizeof(evs) / sizeof(evs[0]));
    for (unsigned k = n; k > 1; k--) {
        unsigned j = (unsigned)rnd_below(k);
        struct ev t = evs[k - 1];
        evs[k - 1] = evs[j];
        evs[j] = t;
    }
    for (unsigned k = 0; k < n; k++)
        run_event(m, evs[k]);
    if (m->batch % 16 == 0) /* the tick: its own completion, in some batch */
        pack_tick(m);
    after_batch(m);
    m->pack_holds += flow_pack_holds(&m->flow, m->log.vhead);
    check_batch(m);
    m->batch++;
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

/* ---- the run ------------------------------------------------------------------------------- */

static void sim_init(struct sim *m, const struct params *p)
{
    memset(m, 0, sizeof(*m));
    m->P = *p;
    rng_state = p->seed;
    /* loop_setup.c: quota_for, the pace, log_units_for (with this model's batch). */
    m->quota = p->max_queue + FRAME_LEN32_HEADER;
    m->pace = p->pace_window < p->max_queue ? p->pace_window : p->max_queue;
    uint64_t frame = p->max_frame + FRAME_LEN32_HEADER + BCAST_REC_UNITS;
    /* One batch appends at most: every recv (a run of whole frames and one assembled frame),
     * and every paused publisher's resume (an assembled frame, and its stash: the recvs that
     * raced its pause). */
    m->batch_units_max =
        (uint64_t)p->recvs * (p->recv_buf + 2 * BCAST_REC_UNITS) +
        (uint64_t)MAXC * ((uint64_t)p->recvs * p->recv_buf + frame + 2 * BCAST_REC_UNITS);
    m->ceiling_fixed = m->quota + 2 * frame + (p->zerocopy ? FANOUT_ZC_PIN : 0);
    /* loop.c: bytes that raced a pause are appended up to one batch of recvs past the window. */
    m->race_slack = (uint64_t)p->recvs * (p->recv_buf + BCAST_REC_UNITS);
    m->log_units = m->ceiling_fixed + m->batch_units_max;
    /* Plus what bcast keeps before the oldest pin: the start of the record holding it (records
     * merge up to BCAST_REC_MAX_LEN). log_units_for leaves it out: there the batch term alone is
     * over 16 MiB, here the whole log is smaller than one merged record. */
    uint64_t log_bytes = m->log_units + BCAST_REC_MAX_LEN;
    assert_int_equal(bcast_init(&m->log, log_bytes, m->log_units / BCAST_REC_UNITS + 1), 0);
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
    for (uint32_t i = 0; i < p->clients && i < MAXC; i++)
        client_open(m, i);
    m->c[0].publisher = true;
    m->c[1].publisher = false;
    m->c[1].speed = SPEED_FAST;
}

/* Free everything, whatever state a failed check left it in (no checks). */
static void sim_free(struct sim *m)
{
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        ingest_close(&m->in, &c->in);
        c->out.inflight = false;
        fanout_release(&m->fo, &c->out);
        free(c->rxf);
        buf_free(&c->gen);
    }
    bcast_destroy(&m->log);
    free(m->mbytes.p);
    free(m->fstart);
    free(m->flen);
    free(m->forigin);
    free(m);
}

/* The run in progress, freed by the teardown when a check fails half way. */
static struct sim *current;

static int model_teardown(void **state)
{
    (void)state;
    if (current)
        sim_free(current);
    current = NULL;
    return 0;
}

static void sim_destroy(struct sim *m)
{
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        ingest_close(&m->in, &c->in);
        c->out.inflight = false; /* as loop_destroy: the ring is gone */
        assert_true(fanout_release(&m->fo, &c->out));
        client_free(m, i);
    }
    assert_int_equal(m->held, 0);
    assert_int_equal(m->stash, 0);
    bcast_destroy(&m->log);
    free(m->mbytes.p);
    free(m->fstart);
    free(m->flen);
    free(m->forigin);
}

static void final_checks(struct sim *m)
{
    uint64_t delivered = 0;
    for (uint32_t i = 0; i < MAXC; i++) {
        struct sclient *c = &m->c[i];
        if (!c->used)
            continue;
        delivered += c->delivered;
        /* Its whole stream reached the log. */
        assert_int_equal(c->gen_appended, c->gen.len);
        /* It received every frame due to it (a subsequence when dropped), none torn. */
        assert_int_equal(c->rxf_len, 0);
        uint64_t due = 0;
        if (c->pub_only) { /* nothing: not a frame, not a byte */
            assert_int_equal(c->rx_bytes, 0);
            assert_int_equal(c->delivered, 0);
            continue;
        }
        for (size_t f = c->join_frame; f < m->nf; f++)
            due += expected_for(m, i, f);
        /* A dropped client may have lost the last frames due to it (when only its own came
         * after the drop): the count below checks it. */
        for (size_t f = c->next_frame; !c->dropped && f < m->nf; f++)
            if (expected_for(m, i, f))
                fail_msg("%s: slot %u never received frame %zu (of %zu; dropped %d)", m->P.name, i,
                         f, m->nf, c->dropped);
        if (!c->dropped) {
            assert_int_equal(c->rx_frames, due);
            assert_int_equal(c->out.frames_dropped, 0);
            assert_int_equal(c->delivered, c->rx_frames);
        } else if (c->rx_frames + c->out.frames_dropped != due) {
            fail_msg("%s: slot %u received %llu frames and %llu were dropped, of %llu due",
                     m->P.name, i, (unsigned long long)c->rx_frames,
                     (unsigned long long)c->out.frames_dropped, (unsigned long long)due);
        }
    }
    assert_int_equal(m->stats.frames_in, m->nf);
    assert_true(m->stats.deliveries >= delivered);
}

static void run_model(const struct params *p)
{
    struct sim *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    current = m;
    sim_init(m, p);
    const char *trace = getenv("MODEL_TRACE");
    trace_slot = !trace ? -1 : strcmp(trace, "all") == 0 ? -2 : atoi(trace);
    for (unsigned b = 0; b < p->batches; b++)
        run_batch(m);
    /* The drain: everyone reads everything, publishers finish the frame they are in. */
    m->draining = true;
    for (uint32_t i = 0; i < MAXC; i++)
        m->c[i].stopped = false;
    unsigned extra = 0;
    while (!quiescent(m)) {
        if (++extra > 20000)
            fail_msg("%s: not quiescent after 20000 batches of draining", p->name);
        for (uint32_t i = 0; i < MAXC; i++)
            m->c[i].stopped = false;
        run_batch(m);
    }
    final_checks(m);
    printf("%s: %u batches, %zu frames, %llu bytes; joins %u leaves %u cuts %u drops %u "
           "pauses %u (racing %u, resumed %u) shorts %u zc %u/%u recv ends %u cancels %u; "
           "pack held after %u batches, suspended %u times; pub-only %u; "
           "max pinned %llu of log %llu units, full log %u\n",
           p->name, m->batch, m->nf, (unsigned long long)m->log.head, m->joins, m->leaves, m->cuts,
           m->drops, m->pauses, m->racing, m->resumes, m->shorts, m->zc_pending, m->notified,
           m->rx_ends, m->cancels, m->pack_holds, m->pack_suspends, m->pub_onlys,
           (unsigned long long)m->max_pinned, (unsigned long long)m->log_units, m->room_fail);
    /* The run went through what it is meant to. */
    assert_true(m->nf > 1000);
    if (p->steady) {
        assert_int_equal(m->cuts + m->drops + m->room_fail, 0);
        sim_destroy(m);
        free(m);
        current = NULL;
        return;
    }
    assert_true(m->pauses > 0 && m->shorts > 0 && m->joins > p->clients && m->leaves > 0);
    assert_true(m->pub_onlys > 0);
    assert_true(m->rx_ends > 0 && m->cancels > 0 && m->resumes > 0);
    if (p->policy == SLOW_DROP && !p->zerocopy)
        assert_true(m->drops > 0);
    else if (p->policy == SLOW_DROP) /* a client with zero-copy pages in the kernel is cut */
        assert_true(m->drops + m->cuts > 0);
    else
        assert_true(m->cuts > 0);
    if (p->zerocopy)
        assert_true(m->zc_pending > 0 && m->notified > 0);
    if (m->room_fail)
        fail_msg("%s: a log sized like the loop's was full %u times", p->name, m->room_fail);
    sim_destroy(m);
    free(m);
    current = NULL;
}

static const struct params base = {
    .batches = 50000,
    .max_frame = 200,
    .max_queue = 2000,
    .pace_window = 1000,
    .sockbuf = 1500,
    .recv_buf = 300,
    .recvs = 4,
    .clients = 5,
};

static void test_relay_model_line_disconnect(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "line disconnect";
    p.seed = 0x9e3779b97f4a7c15ull;
    p.framing = FRAMING_LINE;
    p.policy = SLOW_DISCONNECT;
    run_model(&p);
}

static void test_relay_model_len32_disconnect_echo(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "len32 disconnect echo";
    p.seed = 0x2545f4914f6cdd1dull;
    p.framing = FRAMING_LEN32;
    p.echo = true;
    p.policy = SLOW_DISCONNECT;
    run_model(&p);
}

static void test_relay_model_line_disconnect_zerocopy(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "line disconnect zerocopy";
    p.seed = 0xd1b54a32d192ed03ull;
    p.framing = FRAMING_LINE;
    p.policy = SLOW_DISCONNECT;
    p.zerocopy = true;
    run_model(&p);
}

/* The drop policy: stopped and slow readers are dropped, not cut, and keep their place. */
static void test_relay_model_line_drop(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "line drop";
    p.seed = 0x8cb92ba72f3d8dd7ull;
    p.framing = FRAMING_LINE;
    p.policy = SLOW_DROP;
    run_model(&p);
}

/* Many small messages, one or two per recv: keep_on_drop bytes are many records. */
static void test_relay_model_line_drop_small_messages(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "line drop small messages";
    p.seed = 0x3c6ef372fe94f82bull;
    p.framing = FRAMING_LINE;
    p.policy = SLOW_DROP;
    p.max_frame = 24;
    p.recv_buf = 16;
    p.recvs = 12;
    run_model(&p);
}

static void test_relay_model_len32_drop(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "len32 drop";
    p.seed = 0xa0761d6478bd642full;
    p.framing = FRAMING_LEN32;
    p.policy = SLOW_DROP;
    run_model(&p);
}

/* The drop policy with frames large enough that bytes and log units stay close. */
static void test_relay_model_line_drop_large_frames(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "line drop large frames";
    p.seed = 0xe7037ed1a0b428dbull;
    p.framing = FRAMING_LINE;
    p.policy = SLOW_DROP;
    p.min_payload = 120;
    run_model(&p);
}

static void test_relay_model_len32_drop_large_frames_zerocopy_echo(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "len32 drop large frames zerocopy echo";
    p.seed = 0x8ebc6af09c88c6e3ull;
    p.framing = FRAMING_LEN32;
    p.policy = SLOW_DROP;
    p.echo = true;
    p.zerocopy = true;
    p.min_payload = 120;
    run_model(&p);
}

/*
 * Every client publishes and reads as fast as its socket goes, echo off: nobody is slow, nobody
 * may be cut, and what each pins stays under the ceiling. Each send stops before the client's
 * own next record, so one with many records of its own gets one short stretch per batch.
 */
static void test_relay_model_steady_publishers_echo_off(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "steady publishers echo off";
    p.seed = 0x6a09e667f3bcc909ull;
    p.framing = FRAMING_LINE;
    p.policy = SLOW_DISCONNECT;
    p.steady = true;
    p.clients = 4;
    p.recvs = 12;
    p.recv_buf = 64;
    p.max_frame = 24;
    p.pace_window = p.max_queue;
    p.sockbuf = 1u << 16;
    run_model(&p);
}

/* One batch of exactly these completions, in this order. */
static void scripted_batch(struct sim *m, const struct ev *evs, unsigned n)
{
    m->batch_units = 0;
    for (unsigned k = 0; k < n; k++)
        run_event(m, evs[k]);
    after_batch(m);
    m->batch++;
}

/*
 * Scripted: readers leave while their last send completes in the same batch (EOF on the recv,
 * then the send's completion). The one publisher left has no receiver at all, so flow control
 * must never hold it back ("True when no client receives the frames: they are consumed").
 */
static void test_relay_model_publisher_alone_after_readers_leave(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "publisher alone after readers leave";
    p.seed = 0x510e527fade682d1ull;
    p.framing = FRAMING_LINE;
    p.policy = SLOW_DISCONNECT;
    p.steady = true; /* sockets take whole sends */
    p.clients = 3;
    struct sim *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    current = m;
    sim_init(m, &p);
    m->c[1].publisher = m->c[2].publisher = false;
    scripted_batch(m, NULL, 0); /* recvs armed */
    /* The publisher sends until the readers have something to send. */
    const struct ev pub = {EV_RECV, 0};
    while (m->log.head == 0)
        scripted_batch(m, &pub, 1);
    assert_true(m->c[1].send_pending && m->c[2].send_pending);
    /* Reader 2 goes: EOF, then its send completes; then reader 1 does the same. */
    const struct ev leave2[] = {{EV_LEAVE, 2}, {EV_RECV, 2}, {EV_SEND, 2}, {EV_SEND, 1}};
    scripted_batch(m, leave2, 4);
    assert_false(m->c[2].used && m->c[2].open); /* closed */
    const struct ev leave1[] = {{EV_LEAVE, 1}, {EV_RECV, 1}, {EV_SEND, 1}};
    scripted_batch(m, leave1, m->c[1].send_pending ? 3 : 2);
    scripted_batch(m, NULL, 0);
    assert_false(m->c[1].used);
    assert_false(m->c[2].used);
    /* Alone: everything it sends is taken. */
    for (int b = 0; b < 100; b++) {
        scripted_batch(m, &pub, 1);
        if (m->c[0].paused)
            fail_msg("batch %u: the publisher is paused with no receiver left; the flow's "
                     "leaders are slots %u (reach %llu) and %u (reach %llu), vhead %llu",
                     m->batch, m->flow.top[0].slot, (unsigned long long)m->flow.top[0].reach,
                     m->flow.top[1].slot, (unsigned long long)m->flow.top[1].reach,
                     (unsigned long long)m->log.vhead);
    }
    assert_int_equal(m->c[0].gen_appended + m->c[0].in.partial.len, m->c[0].gen_sent);
    sim_destroy(m);
    free(m);
    current = NULL;
}

/*
 * Scripted: a publisher that left while paused (EOF) is closed by resume_paused once its bytes
 * are in the log, after this batch's flow rebuild. If it led the receivers, the flow must not
 * count it when the next batch's recvs ask: the receiver left is more than the pace behind.
 */
static void test_relay_model_flow_forgets_publisher_closed_after_resume(void **state)
{
    (void)state;
    struct params p = base;
    p.name = "flow forgets a publisher closed after its resume";
    p.seed = 0x9b05688c2b3e6c1full;
    p.framing = FRAMING_LINE;
    p.policy = SLOW_DISCONNECT;
    p.steady = true;
    p.clients = 3;
    p.recv_buf = 100;
    struct sim *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    current = m;
    sim_init(m, &p);
    m->c[1].publisher = true; /* P = 0 and Q = 1 publish, R = 2 only reads */
    m->c[2].publisher = false;
    scripted_batch(m, NULL, 0);
    /* P publishes until the flow pauses it (Q's and R's first sends never complete), and its
     * peer closes right then: EOF while paused. */
    const struct ev pub_p = {EV_RECV, 0}, leave_p = {EV_LEAVE, 0};
    for (int b = 0; !m->c[0].paused; b++) {
        assert_true(b < 1000);
        m->batch_units = 0;
        run_event(m, pub_p);
        if (m->c[0].paused) {
            run_event(m, leave_p);
            run_event(m, pub_p);
        }
        after_batch(m);
        m->batch++;
    }
    assert_true(m->c[0].eof);
    /* Q catches up: P is resumed, its bytes go in, and it is closed. */
    const struct ev send_q = {EV_SEND, 1};
    for (int b = 0; m->c[0].used && m->c[0].open; b++) {
        assert_true(b < 1000);
        scripted_batch(m, &send_q, 1);
    }
    assert_true(m->log.vhead - m->c[2].out.vcursor > m->pace); /* R is far behind */
    /* Q publishes: R is the only receiver of its frames, so it may not (on_frames checks). */
    const struct ev pub_q = {EV_RECV, 1};
    m->batch_units = 0;
    for (int k = 0; k < 20 && !m->c[1].paused; k++)
        run_event(m, pub_q);
    assert_true(m->c[1].paused);
    assert_int_equal(m->c[1].gen_appended, 0);
    sim_free(m);
    current = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_relay_model_line_disconnect, model_teardown),
        cmocka_unit_test_teardown(test_relay_model_steady_publishers_echo_off, model_teardown),
        cmocka_unit_test_teardown(test_relay_model_publisher_alone_after_readers_leave,
                                  model_teardown),
        cmocka_unit_test_teardown(test_relay_model_flow_forgets_publisher_closed_after_resume,
                                  model_teardown),
        cmocka_unit_test_teardown(test_relay_model_len32_disconnect_echo, model_teardown),
        cmocka_unit_test_teardown(test_relay_model_line_disconnect_zerocopy, model_teardown),
        cmocka_unit_test_teardown(test_relay_model_line_drop, model_teardown),
        cmocka_unit_test_teardown(test_relay_model_line_drop_small_messages, model_teardown),
        cmocka_unit_test_teardown(test_relay_model_len32_drop, model_teardown),
        cmocka_unit_test_teardown(test_relay_model_line_drop_large_frames, model_teardown),
        cmocka_unit_test_teardown(test_relay_model_len32_drop_large_frames_zerocopy_echo,
                                  model_teardown),
    };
    return cmocka_run_group_tests(tests, arena_setup, arena_teardown);
}
