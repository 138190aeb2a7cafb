/* Subscribers: see sub.h. */
#include "sub.h"

#include "conn.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static void count_corrupt(struct conn *c)
{
    enum phase ph = c->w->phase;
    if (ph >= PH_PREP_MEASURE && ph != PH_HOLD)
        c->corrupt++;
    else
        ADD(c->w->run->setup_corrupt, 1);
}

static void sub_message(struct conn *c, const char *payload, size_t plen, uint64_t now)
{
    struct flood *run = c->w->run;
    struct msg_info mi;
    if (msg_check(&run->fmt, payload, plen, &mi) != 0 || mi.pub >= (unsigned)run->o->pubs) {
        count_corrupt(c);
        return;
    }
    if (mi.type == 'W') {
        if (mi.pub == 0 && mi.seq + 1 > LD(c->ready_seq))
            ST(c->ready_seq, mi.seq + 1);
        return;
    }
    if (!c->verify)
        return;
    seq_record(&c->tracks[mi.pub], mi.seq);
    ST(c->nexts[mi.pub], c->tracks[mi.pub].next);
    c->m_valid++;
    uint64_t t = now - run->epoch;
    hist_record(&c->w->lat, ns_since(t, mi.ts));
    if (c->rx_kts)
        hist_record(&c->w->drv, ns_since(now, c->rx_kts));
}

/* Redis: a subscriber's first bytes must be the SUBSCRIBE confirmation. Returns the bytes it
 * takes (0: not all of it yet). */
static size_t redis_confirmation(struct conn *c, const char *buf, size_t len)
{
    const struct msgfmt *fmt = &c->w->run->fmt;
    size_t want = fmt->subscribed_len;
    size_t cmp = len < want ? len : want;
    if (memcmp(buf, fmt->subscribed, cmp) != 0) {
        char shown[64];
        size_t k = 0;
        for (size_t i = 0; i < len && k + 4 < sizeof(shown); i++) {
            unsigned char ch = (unsigned char)buf[i];
            if (ch == '\r' || ch == '\n')
                ch = ' ';
            shown[k++] = (ch >= 32 && ch < 127) ? (char)ch : '?';
        }
        shown[k] = 0;
        die("subscriber %u: unexpected reply to SUBSCRIBE: \"%s\" (is this redis?)", c->idx, shown);
    }
    if (len < want)
        return 0;
    conn_set_state(c, CS_OPEN);
    if (c->role == ROLE_SUB)
        ADD(c->w->subs_open, 1);
    return want;
}

/* Keeps buf[off..len) for the next read. */
static void carry_rest(struct conn *c, const char *buf, size_t off, size_t len)
{
    if (off >= len) {
        c->carry_len = 0;
        return;
    }
    size_t rest = len - off;
    if (rest > c->carry_cap) {
        size_t cap = rest + c->w->run->fmt.wire_sub + 64;
        char *p = malloc(cap);
        if (!p)
            die("out of memory");
        free(c->carry);
        c->carry = p;
        c->carry_cap = (uint32_t)cap;
    }
    memmove(c->carry, buf + off, rest);
    c->carry_len = (uint32_t)rest;
}

/* Parses data[0..n) after what was carried over from the last read. */
static void sub_parse(struct conn *c, const char *data, size_t n, uint64_t now)
{
    struct worker *w = c->w;
    const struct msgfmt *fmt = &w->run->fmt;
    const char *buf = data;
    size_t len = n, off = 0;
    if (c->carry_len) {
        size_t need = c->carry_len + n;
        if (need > w->scratch_cap) {
            char *p = realloc(w->scratch, need);
            if (!p)
                die("out of memory");
            w->scratch = p;
            w->scratch_cap = need;
        }
        memcpy(w->scratch, c->carry, c->carry_len);
        memcpy(w->scratch + c->carry_len, data, n);
        buf = w->scratch;
        len = need;
    }
    if (LD(c->state) == CS_SUBSCRIBING && w->o->proto == PROTO_REDIS) {
        off = redis_confirmation(c, buf, len);
        if (off == 0) {
            carry_rest(c, buf, 0, len);
            return;
        }
    }
    uint64_t rx = 0;
    while (off < len) {
        const char *payload;
        size_t plen;
        ssize_t r = msg_next(fmt, buf + off, len - off, &payload, &plen);
        if (r == 0)
            break;
        if (r < 0) {
            count_corrupt(c);
            ADD(c->rx, rx);
            conn_failed(c, "stream out of sync (not the expected framing), closed");
            return;
        }
        if (!payload) {
            conn_nats_control(c, plen, buf + off, (size_t)r);
        } else {
            rx += (uint64_t)r;
            if (c->role != ROLE_SLOW)
                sub_message(c, payload, plen, now);
        }
        off += (size_t)r;
    }
    ADD(c->rx, rx);
    carry_rest(c, buf, off, len);
}

/* nats byte counting: messages have a fixed wire size, so the stream is walked from boundary to
 * boundary without looking inside; what is not a message there is the server's control line
 * (PING, answered). */
static void sub_skim(struct conn *c, const char *data, size_t n)
{
    uint64_t rx = 0;
    size_t off = 0;
    while (off < n) {
        if (c->skip) {
            size_t k = n - off < c->skip ? n - off : (size_t)c->skip;
            c->skip -= k;
            rx += k;
            off += k;
            continue;
        }
        if (c->tok_len == 0 && data[off] == 'M') {
            c->skip = c->w->run->fmt.wire_sub;
            continue;
        }
        /* A control line: collect it up to its '\n'. */
        while (off < n && c->tok_len < sizeof(c->tok)) {
            char ch = data[off++];
            c->tok[c->tok_len++] = ch;
            if (ch == '\n')
                break;
        }
        if (c->tok[c->tok_len - 1] != '\n') {
            if (c->tok_len < sizeof(c->tok))
                continue;
            /* Not a short control line: out of step. */
            ADD(c->rx, rx);
            count_corrupt(c);
            conn_failed(c, "stream out of sync (not the expected framing), closed");
            return;
        }
        if (c->tok_len >= 4 && !memcmp(c->tok, "PING", 4))
            conn_send_now(c, "PONG\r\n", 6);
        c->tok_len = 0;
    }
    ADD(c->rx, rx);
}

void sub_data(struct conn *c, const char *data, size_t n, uint64_t now)
{
    ADD(c->w->rx_total, n);
    ADD(c->w->sub_reads, 1);
    if (c->parse)
        sub_parse(c, data, n, now);
    else if (c->skim)
        sub_skim(c, data, n);
    else
        ADD(c->rx, n);
}

size_t sub_unpack(struct conn *c, const char *buf, int res, const char **payload)
{
    struct msghdr *mh = &c->w->rx_msg;
    struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate((void *)(uintptr_t)buf, res, mh);
    c->rx_kts = 0;
    if (!o)
        die("subscriber %u: recvmsg completion of %d bytes is shorter than its header", c->idx,
            res);
    for (struct cmsghdr *h = io_uring_recvmsg_cmsg_firsthdr(o, mh); h;
         h = io_uring_recvmsg_cmsg_nexthdr(o, mh, h)) {
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(h), sizeof(ts));
            int64_t real = (int64_t)ts.tv_sec * (int64_t)NS_PER_S + ts.tv_nsec;
            c->rx_kts = (uint64_t)(real - c->w->rt_off);
        }
    }
    *payload = (const char *)io_uring_recvmsg_payload(o, mh);
    return io_uring_recvmsg_payload_length(o, res, mh);
}

void sub_stop_parsing(struct worker *w)
{
    for (long i = 0; i < w->nsubs; i++) {
        struct conn *c = w->subs[i];
        if (c->verify || !c->parse)
            continue;
        if (c->carry_len)
            die("subscriber %u: %u stray bytes after the readiness messages", c->idx, c->carry_len);
        c->parse = false;
        c->skim = w->o->proto == PROTO_NATS;
        conn_recv_refresh(c);
    }
}

void sub_set_base(struct worker *w)
{
    for (long i = 0; i < w->nsubs; i++)
        w->subs[i]->base = LD(w->subs[i]->rx);
    for (long i = 0; i < w->nslows; i++)
        w->slows[i]->base = LD(w->slows[i]->rx);
}

void sub_set_lowat(struct worker *w, size_t bytes)
{
    int v = bytes > 1 ? (int)bytes : 1;
    for (long i = 0; w->o->rcvlowat && i < w->nsubs; i++) {
        struct conn *c = w->subs[i];
        if (c->verify || LD(c->state) != CS_OPEN)
            continue;
        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) < 0)
            die("setsockopt SO_RCVLOWAT: %s", strerror(errno));
    }
}

void sub_slow_reads(struct worker *w, uint64_t now)
{
    for (long i = 0; i < w->nslows; i++) {
        struct conn *c = w->slows[i];
        if (c->lazy_inflight || c->fd < 0 || LD(c->state) == CS_CONNECTING ||
            LD(c->state) == CS_DEAD || now < c->slow_allowed_at)
            continue;
        size_t budget = (size_t)(w->o->slow_rate * (double)SLOW_TICK_NS / 1e9);
        if (budget < 1)
            budget = 1;
        if (budget > BIG_READ)
            budget = BIG_READ;
        /* A slow subscriber's bytes are only counted: MSG_TRUNC whatever --read-mode says. */
        struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
        io_uring_prep_recv(sqe, c->fd, w->trash, budget, MSG_DONTWAIT | MSG_TRUNC);
        io_uring_sqe_set_data64(sqe, conn_ud(c, OP_LAZY));
        c->lazy_inflight = true;
        c->slow_allowed_at = now + SLOW_TICK_NS;
    }
}

static void lazy_submit(struct conn *c)
{
    struct worker *w = c->w;
    struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
    if (c->skim || c->tls) {
        /* NATS subscribers skim what they read for the server's PINGs, TLS ones decrypt it:
         * a provided buffer of their own, not the shared scratch. */
        io_uring_prep_recv(sqe, c->fd, NULL, 0, MSG_DONTWAIT);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = w->pbufs.bgid;
    } else {
        io_uring_prep_recv(sqe, c->fd, w->trash, BIG_READ,
                           MSG_DONTWAIT | (w->o->read_mode == READ_TRUNC ? MSG_TRUNC : 0));
    }
    io_uring_sqe_set_data64(sqe, conn_ud(c, OP_LAZY));
    c->lazy_inflight = true;
}

/* A round every --read-interval: a one-shot MSG_DONTWAIT recv on each lazy subscriber that is
 * not watched, SUB_LAZY_SLICE of them per turn of the loop (w->lazy_cursor is where the round
 * stands); one that fills its read goes again at once (sub_on_lazy_cqe). */
void sub_lazy_reads(struct worker *w, uint64_t now)
{
    if (!w->nlazy || w->phase < PH_WARMUP || w->phase == PH_HOLD)
        return;
    if (w->lazy_cursor == 0) {
        if (now < w->next_lazy)
            return;
        w->next_lazy = now + (uint64_t)(w->o->read_interval_us * 1e3);
    }
    long done = 0;
    for (; w->lazy_cursor < w->nsubs && done < SUB_LAZY_SLICE; w->lazy_cursor++) {
        struct conn *c = w->subs[w->lazy_cursor];
        if (c->lazy && !c->parse && !c->recv_armed && !c->lazy_inflight && c->fd >= 0 &&
            LD(c->state) == CS_OPEN) {
            lazy_submit(c);
            done++;
        }
    }
    if (w->lazy_cursor >= w->nsubs)
        w->lazy_cursor = 0;
}

void sub_on_lazy_cqe(struct conn *c, const struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    const char *data = c->w->trash;
    size_t full = BIG_READ;
    uint16_t bid = 0;
    bool buffer = cqe->flags & IORING_CQE_F_BUFFER;
    if (buffer) {
        bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        data = (const char *)ring_bufs_ptr(&c->w->pbufs, bid);
        full = c->w->pbufs.size;
    }
    c->lazy_inflight = false;
    if (c->fd < 0 || LD(c->state) == CS_DEAD || res == -EAGAIN || res == -EINTR ||
        res == -ENOBUFS) {
        /* nothing */
    } else if (res <= 0) {
        conn_failed_res(c, res);
    } else if (c->role == ROLE_SLOW) {
        ADD(c->rx, (uint64_t)res);
    } else {
        if (c->tls)
            tls_recv(c, data, (size_t)res, now_ns());
        else
            sub_data(c, data, (size_t)res, now_ns());
        if (c->fd >= 0 && (size_t)res == full)
            lazy_submit(c);
    }
    if (buffer)
        ring_bufs_recycle(&c->w->pbufs, bid);
}
