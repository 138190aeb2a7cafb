/*
 * The send side of the loop: one send in flight per client, planned by fanout and carrying
 * everything pending (a send, a zero-copy send, or a sendmsg around the client's own frames);
 * short sends wait for POLLOUT; the quota is judged while a socket refuses data.
 */
#include "loop_int.h"

#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "net.h"
#include "say.h"

void loop_arm_poll(struct loop *l, struct conn *c)
{
    struct io_uring_sqe *sqe = loop_sqe(l, OP_POLL, c);
    io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
    c->poll_armed = true;
}

/*
 * A fixed buffer spares SEND_ZC the page pinning per send. Registered at the first zero-copy
 * send, not at start-up: it pins the whole log, which a relay that never sends zero-copy (on
 * loopback, say) should not pay for. Refused when RLIMIT_MEMLOCK is small and we lack
 * CAP_IPC_LOCK: zero-copy then pins per send.
 */
static void register_log_once(struct loop *l)
{
    if (l->log_register_tried)
        return;
    l->log_register_tried = true;
    if (ring_feature_disabled("fixed_buffers"))
        return;
    struct iovec iov = {.iov_base = l->log.base, .iov_len = 2 * l->log.cap};
    int ret = io_uring_register_buffers(&l->ring, &iov, 1);
    l->log_registered = l->feat.fixed_buffers = ret == 0;
    if (ret < 0)
        say_warn("zero-copy: cannot register the broadcast log (%s); pinning per send instead",
                 strerror(-ret));
}

/* Zero-copy for this client? `on` always; `auto` only where the kernel can tell us it copied
 * anyway (REPORT_USAGE), so loopback falls back, and only for batches past the threshold. */
static bool zc_allowed(const struct loop *l, uint64_t *threshold)
{
    if (!l->feat.send_zc || l->o->zerocopy == ZC_OFF || l->zc_refused)
        return false;
    if (l->o->zerocopy == ZC_ON) {
        *threshold = 0;
        return true;
    }
    *threshold = l->o->zc_threshold ? l->o->zc_threshold : 1;
    return l->feat.zc_report_usage;
}

static void finish_too_long(struct loop *l, struct conn *c)
{
    static const char msg[] = "error: frame too long\n";
    if (c->tls) { /* plain text has no place in a TLS stream: just close */
        loop_doom(l, c, DISC_FRAME_TOO_LONG);
        return;
    }
    /* Nothing of ours is in flight and the output is at a frame boundary: safe to write. */
    if (send(c->fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
        shutdown(c->fd, SHUT_WR);
    loop_doom(l, c, DISC_FRAME_TOO_LONG);
}

/* The slow policy and the end of a finishing client, from fanout's verdict. */
bool loop_judge(struct loop *l, struct conn *c)
{
    switch (fanout_judge(&l->fanout, &c->out, c->slot)) {
    case FANOUT_OK:
        return true;
    case FANOUT_DROPPED:
        flow_advance(&l->flow, c->slot, c->out.vcursor);
        c->pack_exempt = true;
        return true;
    case FANOUT_CUT:
        loop_doom(l, c, DISC_SLOW_CONSUMER);
        return false;
    case FANOUT_NOMEM:
        loop_doom(l, c, DISC_NO_MEMORY);
        return false;
    case FANOUT_FINISHED:
        finish_too_long(l, c);
        return false;
    }
    return true;
}

void loop_try_send(struct loop *l, struct conn *c)
{
    if (!conn_live(c) || c->poll_armed || c->out.inflight)
        return;
    if (c->tls) {
        tls_try_send(l, c);
        return;
    }
    uint64_t threshold = 0;
    bool zc_ok = zc_allowed(l, &threshold), zc;
    struct fanout_send s;
    uint64_t vbefore = c->out.vcursor;
    bool planned = fanout_plan(&l->fanout, &c->out, c->slot, zc_ok, threshold, &s, &zc);
    if (c->out.vcursor != vbefore && !c->out.finishing)
        flow_advance(&l->flow, c->slot, c->out.vcursor); /* stepped over its own frames */
    if (!planned) {
        if (c->out.finishing)
            loop_judge(l, c);
        else if (unlikely(l->draining))
            lifecycle_drain_done(l, c);
        return;
    }
    struct io_uring_sqe *sqe;
    const uint8_t *p = s.iov[0].iov_base;
    size_t len = s.iov[0].iov_len;
    if (zc) {
        unsigned zc_flags = l->feat.zc_report_usage ? IORING_SEND_ZC_REPORT_USAGE : 0;
        register_log_once(l);
        sqe = loop_sqe(l, OP_SEND_ZC, c);
        if (l->log_registered)
            io_uring_prep_send_zc_fixed(sqe, c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL, zc_flags,
                                        0);
        else
            io_uring_prep_send_zc(sqe, c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL, zc_flags);
    } else if (s.niov == 1) {
        sqe = loop_sqe(l, OP_SEND, c);
        io_uring_prep_send(sqe, c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else {
        /* Several ranges around its own frames: one sendmsg. The kernel copies the msghdr and
         * iovecs when it takes the SQE (IORING_FEAT_SUBMIT_STABLE, Linux 5.5), so they live
         * in a scratch pool that is reused after each submit. */
        if (l->msg_used == LOOP_MSG_POOL) {
            io_uring_submit(&l->ring);
            l->msg_used = 0;
        }
        struct loop_msg *m = &l->msg_pool[l->msg_used++];
        memcpy(m->iov, s.iov, s.niov * sizeof(s.iov[0]));
        m->hdr = (struct msghdr){.msg_iov = m->iov, .msg_iovlen = s.niov};
        sqe = loop_sqe(l, OP_SEND, c);
        io_uring_prep_sendmsg(sqe, c->fd, &m->hdr, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
}

/*
 * After the log grew: every client gets its send. A client is judged against its quota only
 * while its socket refuses more (poll armed): one that was simply not offered this batch yet is
 * not behind, and the log holds a batch on top of every quota.
 */
/* One client in the pack rule's count: receivers that the slow policy dropped are left out until
 * they are within the pack window again, and pub-only clients (no receivers) always. */
static void count_for_pack(struct conn *c, uint64_t floor, uint32_t *receivers, uint32_t *within)
{
    if (!conn_live(c) || c->out.finishing || !fanout_receives(&c->out)) /* pub-only: none */
        return;
    bool in = c->out.vcursor >= floor;
    if (c->pack_exempt && !in)
        return;
    c->pack_exempt = false;
    ++*receivers;
    *within += in;
}

void loop_flush_clients(struct loop *l)
{
    uint64_t floor = flow_pack_floor(&l->flow, l->log.vhead);
    uint32_t receivers = 0, within = 0;
    for (uint32_t i = 0; i < l->conns.nactive; i++) {
        struct conn *c = conn_at(l, l->conns.active[i]);
        if (!conn_live(c))
            continue;
        if (c->poll_armed)
            loop_judge(l, c);
        else
            loop_try_send(l, c);
        /* The pack rule's count rides on this walk (sends complete later: cursors stay). */
        count_for_pack(c, floor, &receivers, &within);
    }
    flow_pack_count(&l->flow, within, receivers);
}

void loop_count_pack(struct loop *l)
{
    uint64_t floor = flow_pack_floor(&l->flow, l->log.vhead);
    uint32_t receivers = 0, within = 0;
    for (uint32_t i = 0; i < l->conns.nactive; i++)
        count_for_pack(conn_at(l, l->conns.active[i]), floor, &receivers, &within);
    flow_pack_count(&l->flow, within, receivers);
}

void loop_pack_tick(struct loop *l)
{
    uint64_t pacer = 0;
    /* Counted again first: a pack last counted before the stream stopped is not behind now. */
    if (flow_pack_holds(&l->flow, l->log.vhead))
        loop_count_pack(l);
    if (flow_pack_holds(&l->flow, l->log.vhead)) {
        /* How far each receiver has really read: its cursor, less what its socket still holds
         * unacknowledged when it is full. The cursor alone moves in steps of a third of the send
         * buffer (POLLOUT), which would make an honest slow reader look stuck between two. */
        size_t n = 0;
        for (uint32_t i = 0; i < l->conns.nactive; i++) {
            const struct conn *c = conn_at(l, l->conns.active[i]);
            if (!conn_live(c) || c->out.finishing || c->pack_exempt || !fanout_receives(&c->out))
                continue;
            uint64_t read = c->out.cursor, queued = c->poll_armed ? net_outq(c->fd) : 0;
            l->pack_scratch[n++] = queued < read ? read - queued : 0;
        }
        if (n)
            pacer = flow_pack_pacer(l->pack_scratch, n);
    }
    flow_pack_tick(&l->flow, pacer, l->log.vhead);
}

/* The one send in flight to @c completed: move its cursor, then send again or wait. */
void loop_on_send(struct loop *l, struct conn *c, int res)
{
    enum fanout_sent r = fanout_sent(&l->fanout, &c->out, res);
    if (c->state != CONN_OPEN) {
        loop_maybe_finish_close(l, c);
        return;
    }
    if (conn_live(c) && !c->out.finishing) /* a doomed client left the flow already */
        flow_advance(&l->flow, c->slot, c->out.vcursor);
    if (unlikely(r == FANOUT_SENT_ERROR)) {
        loop_doom(l, c, c->out.finishing ? DISC_FRAME_TOO_LONG : DISC_RESET);
    } else if (r == FANOUT_SENT_SHORT) {
        /* The socket is full. A client being cut for a long frame is not waited for. */
        if (c->out.finishing) {
            loop_doom(l, c, DISC_FRAME_TOO_LONG);
        } else if (conn_live(c)) {
            loop_arm_poll(l, c);
            loop_judge(l, c);
        }
    } else if (r == FANOUT_SENT_PART) {
        /* It took all, but the send stopped short of what was pending (at one of its own
         * frames, a remainder, a size cap): it is behind by the rest, so it is judged too. */
        if (conn_live(c) && loop_judge(l, c))
            loop_try_send(l, c);
    } else {
        loop_try_send(l, c);
    }
}
