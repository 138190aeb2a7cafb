/* Publishers: see pub.h. */
#include "pub.h"

#include "conn.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Fills the output buffer with the messages now due. Returns how many. */
static size_t pub_generate(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    const struct flood_opts *o = w->o;
    const struct flood *run = w->run;
    struct pubstate *p = c->pub;
    if (p->gen_done || !pub_phase_loaded(w))
        return 0;
    bool measured = w->phase != PH_WARMUP;
    char type = measured ? 'M' : 'W';
    uint64_t *seq = measured ? &p->m_seq : &p->w_seq;
    size_t wire = run->fmt.wire_pub;
    uint64_t max_n = (o->rate <= 0 ? PUB_BATCH : PUB_BATCH_RATE) / wire;
    if (max_n == 0)
        max_n = 1;
    if (measured && o->count_mode) {
        uint64_t left = o->count - p->phase_msgs;
        if (left < max_n)
            max_n = left;
    }
    size_t n = 0;
    if (o->rate <= 0) {
        /* Stamped with the time right now, just before the send. */
        uint64_t t = now_ns();
        if (t >= w->phase_end || max_n == 0) {
            p->gen_done = true;
            return 0;
        }
        uint64_t ts = t - run->epoch;
        for (; n < max_n; n++)
            msg_encode(&run->fmt, p->out + n * wire, type, c->idx, (*seq)++, ts);
    } else {
        /* pub_lag_us: how late each measured message is written into the buffer, its send being
         * queued in the same turn of the loop (the late wake-up counts against the relay). */
        uint64_t t = measured ? now_ns() : 0;
        for (; n < max_n; n++) {
            uint64_t k = p->phase_msgs + n;
            uint64_t due = p->sched_start + (uint64_t)((double)k * 1e9 / o->rate);
            if (due >= w->phase_end) {
                p->gen_done = true;
                break;
            }
            if (due > now)
                break;
            if (measured)
                hist_record(&w->plag, ns_since(t, due));
            msg_encode(&run->fmt, p->out + n * wire, type, c->idx, (*seq)++, due - run->epoch);
        }
    }
    p->phase_msgs += n;
    if (measured && o->count_mode && p->phase_msgs >= o->count)
        p->gen_done = true;
    p->out_off = 0;
    p->out_len = n * wire;
    p->out_ctl = false;
    return n;
}

uint64_t pub_next_due(const struct conn *c)
{
    const struct pubstate *p = c->pub;
    return p->sched_start + (uint64_t)((double)p->phase_msgs * 1e9 / c->w->o->rate);
}

static void pub_submit(struct conn *c)
{
    struct pubstate *p = c->pub;
    if (c->tls) {
        p->inflight = true;
        tls_pub_submit(c, p->out + p->out_off, p->out_len - p->out_off);
        return;
    }
    struct io_uring_sqe *sqe = ring_get_sqe(&c->w->ring);
    io_uring_prep_send(sqe, c->fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, conn_ud(c, OP_SEND));
    p->inflight = true;
}

void pub_update_done(struct conn *c)
{
    struct pubstate *p = c->pub;
    bool done = p->gen_done && p->out_off == p->out_len && !p->inflight;
    if (done != LD(p->done))
        ST(p->done, done);
}

/* Starts the next send when none is in flight: the rest of the current buffer, a PONG, or the
 * messages now due. */
static void pub_pump(struct conn *c, uint64_t now)
{
    struct pubstate *p = c->pub;
    if (LD(c->state) != CS_OPEN || p->inflight)
        return;
    if (p->out_off == p->out_len) {
        if (p->pong_due) {
            memcpy(p->out, "PONG\r\n", 6);
            p->out_off = 0;
            p->out_len = 6;
            p->out_ctl = true;
            p->pong_due = false;
        } else if (pub_generate(c, now) == 0) {
            pub_update_done(c);
            return;
        }
    }
    pub_submit(c);
    pub_update_done(c);
}

void pub_service(struct worker *w, uint64_t now)
{
    for (long i = 0; i < w->npubs; i++) {
        struct conn *c = w->pubs[i];
        struct pubstate *p = c->pub;
        if (LD(c->state) != CS_OPEN || p->inflight)
            continue;
        if (p->out_off != p->out_len || p->pong_due ||
            (!p->gen_done && (w->o->rate <= 0 || pub_next_due(c) <= now)))
            pub_pump(c, now);
        else if (p->gen_done)
            pub_update_done(c);
    }
}

void pub_ready(struct worker *w, uint64_t now)
{
    if (!w->npubs || w->pubs[0]->idx != 0)
        return;
    struct conn *c = w->pubs[0];
    struct pubstate *p = c->pub;
    uint64_t round = LD(w->run->ctl.ready_round);
    if (round == w->ready_done || p->inflight || p->out_off != p->out_len)
        return;
    w->ready_done = round;
    msg_encode(&w->run->fmt, p->out, 'W', 0, p->w_seq++, now - w->run->epoch);
    p->out_off = 0;
    p->out_len = w->run->fmt.wire_pub;
    p->out_ctl = true; /* not counted */
    ST(p->ready_sent, p->w_seq);
    pub_submit(c);
}

void pub_on_send_cqe(struct conn *c, int res, uint64_t now)
{
    struct pubstate *p = c->pub;
    /* TLS: the batch's ciphertext may take more than one send; then res is its plaintext. */
    if (c->tls && LD(c->state) == CS_OPEN && (res = tls_pub_sent(c, res)) == 0)
        return;
    p->inflight = false;
    if (LD(c->state) != CS_OPEN)
        return;
    if (res <= 0) {
        conn_failed_res(c, res == 0 ? -EPIPE : res);
        return;
    }
    p->out_off += (size_t)res;
    if (!p->out_ctl)
        ADD(p->phase_written, (uint64_t)res);
    pub_pump(c, now);
}

void pub_data(struct conn *c, const char *data, size_t n)
{
    struct pubstate *p = c->pub;
    const struct flood_opts *o = c->w->o;
    if (o->proto == PROTO_REDIS) {
        if (!p->checked_reply) {
            p->checked_reply = true;
            if (data[0] != ':') {
                char shown[64];
                size_t k = n < 60 ? n : 60;
                for (size_t i = 0; i < k; i++)
                    shown[i] = (data[i] == '\r' || data[i] == '\n') ? ' ' : data[i];
                shown[k] = 0;
                run_error(c->w->run, "publisher %u: unexpected reply to PUBLISH: \"%s\"", c->idx,
                          shown);
            }
        }
        return;
    }
    if (o->proto != PROTO_NATS)
        return;
    /* nats: only control lines arrive (INFO, PING, -ERR): scan them line by line. */
    size_t off = 0;
    while (off < n) {
        const char *nl = memchr(data + off, '\n', n - off);
        size_t take = nl ? (size_t)(nl - (data + off)) + 1 : n - off;
        if (c->carry_len + take > c->carry_cap) {
            size_t cap = c->carry_len + take + 256;
            char *q = realloc(c->carry, cap);
            if (!q)
                die("out of memory");
            c->carry = q;
            c->carry_cap = (uint32_t)cap;
        }
        memcpy(c->carry + c->carry_len, data + off, take);
        c->carry_len += (uint32_t)take;
        off += take;
        if (!nl)
            break;
        const char *payload;
        size_t kind;
        if (msg_next(&c->w->run->fmt, c->carry, c->carry_len, &payload, &kind) > 0 && !payload)
            conn_nats_control(c, kind, c->carry, c->carry_len);
        c->carry_len = 0;
    }
    pub_pump(c, now_ns());
}

void pub_reset_phase(struct worker *w, uint64_t start)
{
    const struct flood_opts *o = w->o;
    double period = o->rate > 0 ? 1e9 / o->rate : 0;
    for (long i = 0; i < w->npubs; i++) {
        struct conn *c = w->pubs[i];
        struct pubstate *p = c->pub;
        p->phase_msgs = 0;
        ST(p->phase_written, 0);
        p->gen_done = LD(c->state) != CS_OPEN;
        /* Spread the publishers' schedules evenly over one period. */
        p->sched_start = start + (uint64_t)(period * (double)c->idx / (double)o->pubs);
        ST(p->done, p->gen_done);
    }
}
