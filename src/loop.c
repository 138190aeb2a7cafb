/*
 * The server loop. Every step of the data path is a completion of one ring:
 *
 *   listen socket --multishot accept--> conn table
 *   client socket --multishot recv, provided buffers--> frame assembly --append once--> bcast log
 *   bcast log --one MSG_DONTWAIT send in flight per client, covering all it has pending--> clients
 *
 * CQEs are handled in batches; after each batch the clients that have new bytes pending get
 * their one send (flush_clients), so under load a single send carries many frames.
 */
#include "ringcast/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "ringcast/alloc.h"
#include "ringcast/bcast.h"
#include "ringcast/conn.h"
#include "ringcast/frame.h"
#include "ringcast/httpd.h"
#include "ringcast/metrics.h"
#include "ringcast/net.h"
#include "ringcast/netaddr.h"
#include "ringcast/ring.h"
#include "ringcast/say.h"
#include "ringcast/stats.h"
#include "ringcast/sysd.h"
#include "ringcast/userdata.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define NSEC 1000000000ull
#define TICK_NS (100 * 1000 * 1000ull)
#define ACCEPT_BACKOFF_NS (100 * 1000 * 1000ull)
/* How far behind head a client the server still owes a send may fall before publishers wait. */
#define PACE_BYTES (1u << 20)
/* A client whose socket stays full this long with nothing acknowledged has stopped reading; one
 * whose socket stays full for SLOW_NS reads far slower than the stream. Neither holds anyone. */
#define LAGGING_NS (250 * 1000 * 1000ull)
#define SLOW_NS (2000 * 1000 * 1000ull)
#define RECV_BUF_COUNT 256u
#define RECV_BUF_SIZE (64u << 10)
#define RECV_BGID 1
#define NO_BID UINT16_MAX
#define SQ_ENTRIES 4096u
#define CQ_ENTRIES 65536u
/* Descriptors besides clients: listener, ring, signalfd, spare, stdio and some slack. */
#define FD_RESERVE 32u

struct loop {
    const struct opts *o;
    struct io_uring ring;
    bool ring_ready;
    struct ring_features feat;
    struct ring_bufs bufs;
    uint16_t *held_next; /* per buffer: next held buffer of the same connection */
    uint32_t *held_len;  /* per buffer: bytes received into it */
    struct bcast log;
    bool log_registered; /* the log is a fixed buffer for SEND_ZC */
    bool log_register_tried;
    struct conn_table conns;
    uint64_t quota;    /* max pending output per client */
    uint64_t pace;     /* how far a reading client may lag before publishers wait for it */
    uint64_t bp_limit; /* head may not pass this: a reading client would lag more than pace */

    int listen_fd;
    int signal_fd;
    int spare_fd; /* released on EMFILE to shed one connection cleanly (libuv's trick) */
    bool accept_armed;
    rlim_t accept_fd_limit; /* RLIMIT_NOFILE when the accept was armed */
    rlim_t fd_limit_seen;   /* to report a change once */
    uint64_t accept_resume_ns;

    uint32_t blocked_head, blocked_tail; /* FIFO of publishers waiting for log space/buffers */
    uint32_t partial_head;               /* connections holding an incomplete frame */
    uint64_t partial_bytes;              /* memory held by incomplete frames and resids */
    uint32_t nopen;
    bool head_moved; /* the log grew in this batch: clients need their sends */

    bool draining, done;
    uint64_t drain_deadline_ns, hard_deadline_ns;
    uint64_t now_ns;
    uint64_t next_stats_ns, last_reject_log_ns;
    uint64_t rejects_unlogged;
    struct stats stats, stats_prev;

    struct signalfd_siginfo siginfo;
    struct __kernel_timespec tick_ts;

    struct httpd httpd; /* --metrics */
    bool httpd_on;
    uint64_t start_ns;
    uint64_t watchdog_ns, next_watchdog_ns; /* systemd watchdog period, 0 when off */
    uint64_t next_status_ns;
    uint32_t status_clients; /* client count last sent in STATUS= */
    char features[256];
};

/* ===== helpers ===== */

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ud_make(enum ud_op op, const struct conn *c)
{
    return ud_pack(op, c ? c->gen : 0, c ? c->slot : 0);
}

static inline struct conn *conn_at(struct loop *l, uint32_t slot)
{
    return &l->conns.slots[slot];
}

static char *peer_str(const struct conn *c, char buf[NETADDR_STRLEN])
{
    return netaddr_format(&c->peer, buf, NETADDR_STRLEN);
}

static struct io_uring_sqe *sqe_for(struct loop *l, enum ud_op op, const struct conn *c)
{
    struct io_uring_sqe *sqe = ring_get_sqe(&l->ring);
    io_uring_sqe_set_data64(sqe, ud_make(op, c));
    return sqe;
}

static void cancel_op(struct loop *l, enum ud_op op, const struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_for(l, OP_IGNORE, NULL);
    io_uring_prep_cancel64(sqe, ud_make(op, c), 0);
}

/* Bytes queued for @c and not yet taken by its socket. */
static inline uint64_t conn_pending(const struct loop *l, const struct conn *c)
{
    return l->log.head - c->cursor - c->own_ahead + (c->resid_len - c->resid_off);
}

static inline uint32_t skip_origin(const struct loop *l, const struct conn *c)
{
    return l->o->echo ? BCAST_NO_ORIGIN : c->slot;
}

/* ===== lists: blocked publishers (FIFO) and partial frames ===== */

static void blocked_push(struct loop *l, struct conn *c)
{
    if (c->in_blocked)
        return;
    c->in_blocked = true;
    c->blocked_next = CONN_NONE;
    if (l->blocked_tail == CONN_NONE)
        l->blocked_head = c->slot;
    else
        conn_at(l, l->blocked_tail)->blocked_next = c->slot;
    l->blocked_tail = c->slot;
}

static void blocked_pop(struct loop *l)
{
    struct conn *c = conn_at(l, l->blocked_head);
    l->blocked_head = c->blocked_next;
    if (l->blocked_head == CONN_NONE)
        l->blocked_tail = CONN_NONE;
    c->in_blocked = false;
}

/* Rare (a blocked publisher closing): a walk is fine. */
static void blocked_remove(struct loop *l, struct conn *c)
{
    uint32_t prev = CONN_NONE;
    for (uint32_t s = l->blocked_head; s != CONN_NONE; prev = s, s = conn_at(l, s)->blocked_next) {
        if (s != c->slot)
            continue;
        if (prev == CONN_NONE)
            l->blocked_head = c->blocked_next;
        else
            conn_at(l, prev)->blocked_next = c->blocked_next;
        if (l->blocked_tail == s)
            l->blocked_tail = prev;
        break;
    }
    c->in_blocked = false;
}

static void partial_track(struct loop *l, struct conn *c)
{
    if (c->in_partial_list)
        return;
    c->in_partial_list = true;
    c->partial_since_ns = l->now_ns;
    c->partial_prev = CONN_NONE;
    c->partial_next = l->partial_head;
    if (l->partial_head != CONN_NONE)
        conn_at(l, l->partial_head)->partial_prev = c->slot;
    l->partial_head = c->slot;
}

static void partial_clear(struct loop *l, struct conn *c)
{
    l->partial_bytes -= frame_partial_reset(&c->partial);
    c->partial_complete = false;
    if (!c->in_partial_list)
        return;
    c->in_partial_list = false;
    if (c->partial_prev != CONN_NONE)
        conn_at(l, c->partial_prev)->partial_next = c->partial_next;
    else
        l->partial_head = c->partial_next;
    if (c->partial_next != CONN_NONE)
        conn_at(l, c->partial_next)->partial_prev = c->partial_prev;
}

static void held_release(struct loop *l, struct conn *c)
{
    while (c->held_first != NO_BID) {
        uint16_t bid = c->held_first;
        c->held_first = l->held_next[bid];
        ring_bufs_recycle(&l->bufs, bid);
    }
    c->held_last = NO_BID;
    c->held_off = 0;
}

static void held_push(struct loop *l, struct conn *c, uint16_t bid, uint32_t len)
{
    l->held_len[bid] = len;
    l->held_next[bid] = NO_BID;
    if (c->held_first == NO_BID)
        c->held_first = bid;
    else
        l->held_next[c->held_last] = bid;
    c->held_last = bid;
}

static void resid_free(struct loop *l, struct conn *c)
{
    if (!c->resid)
        return;
    l->partial_bytes -= c->resid_len;
    rc_free(c->resid);
    c->resid = NULL;
    c->resid_len = c->resid_off = 0;
}

/* ===== closing ===== */

/* Free the slot once the kernel holds nothing of this connection any more. */
static void maybe_finish_close(struct loop *l, struct conn *c)
{
    if (c->state != CONN_CLOSING || c->recv_armed || c->poll_armed || c->send_inflight)
        return;
    if (c->zc_notifs) {
        /* Notifications wait for the socket to drop our pages: reset it so that happens now. */
        if (!c->fd_closed) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(c->fd);
            c->fd_closed = true;
        }
        return;
    }
    if (!c->fd_closed)
        close(c->fd);
    if (c->in_blocked)
        blocked_remove(l, c);
    conn_table_free(&l->conns, c);
}

/* Start closing @c: log it, drop what it holds, cancel what is outstanding. */
static void begin_close(struct loop *l, struct conn *c, enum disconnect_reason reason)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_CLOSING;
    c->reason = (uint8_t)reason;
    l->nopen--;
    l->stats.disconnects[reason]++;
    char addr[NETADDR_STRLEN];
    say_event("%s disconnected%s", peer_str(c, addr), stats_reason_suffix(reason));
    partial_clear(l, c);
    held_release(l, c);
    resid_free(l, c);
    if (c->recv_armed)
        cancel_op(l, OP_RECV, c);
    if (c->poll_armed)
        cancel_op(l, OP_POLL, c);
    maybe_finish_close(l, c);
}

/* ===== sending ===== */

static void arm_poll(struct loop *l, struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_for(l, OP_POLL, c);
    io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
    c->poll_armed = true;
    c->poll_since_ns = l->now_ns;
    net_bytes_acked(c->fd, &c->acked_at_poll);
}

static bool use_zerocopy(const struct loop *l, const struct conn *c, uint64_t len)
{
    if (!l->feat.send_zc || l->o->zerocopy == ZC_OFF)
        return false;
    if (l->o->zerocopy == ZC_ON)
        return true;
    /* auto: only where the kernel can tell us it copied anyway, so loopback falls back. */
    return l->feat.zc_report_usage && !c->zc_copied && len >= l->o->zc_threshold;
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

static void finish_too_long(struct loop *l, struct conn *c)
{
    static const char msg[] = "error: frame too long\n";
    /* Nothing of ours is in flight and the output is at a frame boundary: safe to write. */
    if (send(c->fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
        shutdown(c->fd, SHUT_WR);
    begin_close(l, c, DISC_FRAME_TOO_LONG);
}

/*
 * Shutting down and all of @c's output is in its socket. Closing now could lose it (an orphaned
 * socket whose peer reads slowly can be reset), so send FIN after the data and close once the
 * peer has acknowledged everything (checked here and on every tick) or the drain time is up.
 */
static void drain_done(struct loop *l, struct conn *c)
{
    if (!c->drained) {
        c->drained = true;
        shutdown(c->fd, SHUT_WR);
    }
    if (net_unacked(c->fd) == 0)
        begin_close(l, c, DISC_SHUTDOWN);
}

/* Give @c its one send, covering everything pending for it, unless one is already out. */
static void try_send(struct loop *l, struct conn *c)
{
    if (c->send_inflight || c->poll_armed || c->state != CONN_OPEN)
        return;
    if (c->resid) {
        struct io_uring_sqe *sqe = sqe_for(l, OP_SEND, c);
        io_uring_prep_send(sqe, c->fd, c->resid + c->resid_off, c->resid_len - c->resid_off,
                           MSG_DONTWAIT | MSG_NOSIGNAL);
        c->send_inflight = c->inflight_resid = true;
        c->inflight_len = c->resid_len - c->resid_off;
        l->stats.sends++;
        return;
    }
    uint64_t skipped = 0;
    uint64_t len = bcast_next_range(&l->log, &c->cursor, skip_origin(l, c), c->own_end, &skipped);
    if (unlikely(skipped)) {
        c->own_ahead -= skipped;
        c->seq = bcast_seq_at(&l->log, c->cursor); /* its own frames are not delivered to it */
    }
    /* The range ends at head or at one of its own records: a frame boundary whose sequence
     * number says how many frames the send carries. */
    c->inflight_end_seq = len ? bcast_seq_at(&l->log, c->cursor + len) : c->seq;
    if (unlikely(c->finishing)) {
        len = c->close_at > c->cursor ? c->close_at - c->cursor : 0;
        if (len == 0) {
            finish_too_long(l, c);
            return;
        }
    }
    if (len == 0) {
        if (unlikely(l->draining))
            drain_done(l, c);
        return;
    }
    /* A send moves at most what a socket buffer can take anyway; keeps lengths in 32 bits.
     * (The end is then no longer a known boundary: the next send counts those frames.) */
    if (unlikely(len > (64u << 20) || c->finishing)) {
        if (len > (64u << 20))
            len = 64u << 20;
        c->inflight_end_seq = c->seq;
    }
    const uint8_t *p = bcast_ptr(&l->log, c->cursor);
    struct io_uring_sqe *sqe;
    if (use_zerocopy(l, c, len)) {
        unsigned zc_flags = l->feat.zc_report_usage ? IORING_SEND_ZC_REPORT_USAGE : 0;
        register_log_once(l);
        sqe = sqe_for(l, OP_SEND_ZC, c);
        if (l->log_registered)
            io_uring_prep_send_zc_fixed(sqe, c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL, zc_flags,
                                        0);
        else
            io_uring_prep_send_zc(sqe, c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL, zc_flags);
        l->stats.zc_sends++;
    } else {
        sqe = sqe_for(l, OP_SEND, c);
        io_uring_prep_send(sqe, c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    c->send_inflight = true;
    c->inflight_start = c->cursor;
    c->inflight_len = (uint32_t)len;
    l->stats.sends++;
}

/*
 * Drop policy: discard the oldest frames queued for @c, keeping about half a quota of the newest,
 * so it soon receives current data again and is not judged again at once. A frame already partly
 * sent is finished first (its rest copied aside, since its log bytes are let go).
 */
static void drop_backlog(struct loop *l, struct conn *c)
{
    const enum framing framing = l->o->framing;
    const struct bcast *log = &l->log;
    uint64_t frame_end = bcast_frame_end(log, framing, c->cursor);
    uint64_t keep = l->o->max_queue / 2;
    uint64_t resume = log->head > frame_end + keep ? log->head - keep : frame_end;
    resume = bcast_frame_end(log, framing, resume);
    if (frame_end > c->cursor) {
        uint32_t n = (uint32_t)(frame_end - c->cursor);
        c->resid = rc_malloc(n);
        if (!c->resid) {
            begin_close(l, c, DISC_NO_MEMORY);
            return;
        }
        memcpy(c->resid, bcast_ptr(log, c->cursor), n);
        c->resid_len = n;
        c->resid_off = 0;
        l->partial_bytes += n;
    }
    uint64_t dropped = bcast_count_frames(log, framing, frame_end, resume, skip_origin(l, c));
    c->frames_dropped += dropped;
    l->stats.frames_dropped += dropped;
    c->cursor = resume;
    c->seq = bcast_seq_at_boundary(log, framing, resume);
    if (!l->o->echo)
        c->own_ahead = bcast_origin_bytes(log, resume, log->head, c->slot);
}

/* The slow-consumer policy, for a client whose backlog is past --max-queue. */
static void over_quota(struct loop *l, struct conn *c)
{
    if (l->o->slow_policy == SLOW_DISCONNECT)
        begin_close(l, c, DISC_SLOW_CONSUMER);
    else if (!c->send_inflight) /* the bytes under a send in flight stay until it completes */
        drop_backlog(l, c);
}

static inline void check_quota(struct loop *l, struct conn *c)
{
    if (unlikely(conn_pending(l, c) > l->quota) && !c->finishing)
        over_quota(l, c);
}

/*
 * After the log grew: every client gets its send. A client is judged slow only while its socket
 * refuses more (poll armed): one that was simply not offered the burst yet is not slow, and the
 * log is sized to hold a whole receive batch on top of every quota.
 * Downwards, so a slot freed on the way (swapped from the end) was already visited.
 */
static void flush_clients(struct loop *l)
{
    for (uint32_t i = l->conns.nactive; i-- > 0;) {
        struct conn *c = conn_at(l, l->conns.active[i]);
        if (c->state != CONN_OPEN)
            continue;
        if (c->poll_armed)
            check_quota(l, c);
        else
            try_send(l, c);
    }
}

/* ===== log space ===== */

/* The oldest log byte some connection still needs. Also applies the slow policy, so a client
 * past its quota cannot hold the log. O(clients): runs only when the log is full. */
static void reclaim(struct loop *l)
{
    uint64_t keep = l->log.head;
    for (uint32_t i = l->conns.nactive; i-- > 0;) {
        struct conn *c = conn_at(l, l->conns.active[i]);
        if (c->state == CONN_OPEN)
            check_quota(l, c);
        uint64_t pin = l->log.head;
        if (c->state == CONN_OPEN)
            pin = c->cursor;
        else if (c->state == CONN_CLOSING && c->send_inflight && !c->inflight_resid)
            pin = c->inflight_start;
        if (c->state != CONN_FREE && c->zc_notifs && c->zc_pin < pin)
            pin = c->zc_pin;
        if (pin < keep)
            keep = pin;
    }
    bcast_release(&l->log, keep);
}

/*
 * Whether @c reads slower than the stream, so that publishers should not wait for it. Its
 * socket being full is not enough (a reader serving a thousand sockets leaves each full for a
 * while): it must have stayed full for LAGGING_NS with its peer acknowledging nothing (it stopped
 * reading), or for SLOW_NS whatever it acknowledged (it reads, but far slower than the stream).
 */
static bool conn_lagging(const struct loop *l, const struct conn *c)
{
    if (!c->poll_armed)
        return false;
    uint64_t waited = l->now_ns - c->poll_since_ns;
    if (waited < LAGGING_NS)
        return false;
    if (waited >= SLOW_NS)
        return true;
    uint64_t acked;
    return net_bytes_acked(c->fd, &acked) < 0 || acked == c->acked_at_poll;
}

/* The head offset at which @c would lag more than the pace window. */
static inline uint64_t conn_room(const struct loop *l, const struct conn *c)
{
    uint64_t resid = c->resid_len - c->resid_off;
    uint64_t room = c->cursor + c->own_ahead + l->pace;
    return room > resid ? room - resid : 0;
}

/* @c caught up with what it was sent, or just joined: the limit must account for it. Cursors
 * only move forward, so a limit computed earlier stays safe for the others. */
static inline void bp_include(struct loop *l, const struct conn *c)
{
    uint64_t room = conn_room(l, c);
    if (room < l->bp_limit)
        l->bp_limit = room;
}

/*
 * Back-pressure: the server reads publishers no faster than it can fan out. The log may grow
 * only while every client that keeps up (not conn_lagging) lags at most the pace window behind;
 * otherwise TCP pushes back on the publishers. A lagging client holds no one back, and the slow
 * policy meets it when its backlog passes --max-queue. The small window also keeps the bytes in
 * flight cache-sized. O(clients): runs only when head reaches the last limit.
 */
static void recompute_bp_limit(struct loop *l)
{
    uint64_t limit = UINT64_MAX;
    for (uint32_t i = l->conns.nactive; i-- > 0;) {
        struct conn *c = conn_at(l, l->conns.active[i]);
        if (c->state != CONN_OPEN || c->finishing || conn_lagging(l, c))
            continue;
        uint64_t room = conn_room(l, c);
        if (room < limit)
            limit = room;
    }
    l->bp_limit = limit;
}

static bool ensure_space(struct loop *l, size_t len)
{
    /* An append longer than the window (a receive buffer when --max-queue is small, a long
     * frame) waits only until every client that keeps up is caught up; it must not wait forever. */
    uint64_t need = len < l->pace ? len : l->pace;
    if (unlikely(l->log.head + need > l->bp_limit)) {
        recompute_bp_limit(l);
        if (l->log.head + need > l->bp_limit)
            return false;
    }
    if (likely(bcast_fits(&l->log, len)))
        return true;
    reclaim(l);
    return bcast_fits(&l->log, len);
}

/* ===== receiving ===== */

static void log_frames(const struct loop *l, const struct conn *c, const uint8_t *p, size_t len)
{
    char addr[NETADDR_STRLEN], text[4 * 200 + 4];
    peer_str(c, addr);
    while (len) {
        size_t flen = frame_wire_len(l->o->framing, p, len);
        const uint8_t *payload = p;
        size_t plen = flen;
        if (l->o->framing == FRAMING_LINE) {
            plen = flen - 1;
            if (plen && payload[plen - 1] == '\r')
                plen--;
        } else {
            payload += FRAME_LEN32_HEADER;
            plen -= FRAME_LEN32_HEADER;
        }
        say_escape(payload, plen, 200, text);
        say_event("%s said: %s", addr, text);
        p += flen;
        len -= flen;
    }
}

/* Append whole frames from @c to the log; every other client will get them. */
static void publish(struct loop *l, struct conn *c, const uint8_t *p, size_t len, size_t nframes)
{
    uint64_t at = bcast_append(&l->log, c->slot, p, len, (uint32_t)nframes);
    c->own_end = at + len;
    if (!l->o->echo)
        c->own_ahead += len;
    l->stats.frames_in += nframes;
    l->stats.bytes_in += len;
    l->head_moved = true;
    if (unlikely(say_verbosity() == VERB_VERBOSE))
        log_frames(l, c, p, len);
}

static void frame_too_long(struct loop *l, struct conn *c)
{
    l->stats.protocol_errors++;
    partial_clear(l, c);
    held_release(l, c);
    if (c->recv_armed) {
        cancel_op(l, OP_RECV, c);
        c->recv_paused = true;
    }
    if (l->o->framing != FRAMING_LINE) {
        begin_close(l, c, DISC_FRAME_TOO_LONG);
        return;
    }
    /* Line mode: the client first gets the rest of a frame in progress, then one error line. */
    c->finishing = true;
    c->close_at = bcast_frame_end(&l->log, l->o->framing, c->cursor);
    try_send(l, c);
}

/* Past --max-partial-memory: the connection holding the largest incomplete frame goes. */
static void enforce_partial_memory(struct loop *l)
{
    while (l->partial_bytes > l->o->max_partial_memory) {
        struct conn *victim = NULL;
        for (uint32_t s = l->partial_head; s != CONN_NONE; s = conn_at(l, s)->partial_next) {
            struct conn *c = conn_at(l, s);
            if (!victim || c->partial.cap > victim->partial.cap)
                victim = c;
        }
        if (!victim)
            return;
        begin_close(l, victim, DISC_PARTIAL_MEMORY);
    }
}

enum consume_result {
    CONSUMED, /* all taken */
    STALLED,  /* the log is full: *used bytes were taken, keep the rest */
    DROPPED,  /* the connection is closing or finishing: discard the rest */
};

/* Frame the bytes @p[0..@len) from @c into the log. */
static enum consume_result consume(struct loop *l, struct conn *c, const uint8_t *p, size_t len,
                                   size_t *used)
{
    const enum framing framing = l->o->framing;
    const uint64_t max_frame = l->o->max_frame;
    size_t pos = 0;
    *used = len;
    while (pos < len || c->partial_complete) {
        if (c->state != CONN_OPEN || c->finishing)
            return DROPPED;
        if (c->partial_complete) {
            /* A frame assembled across buffers goes into the log in one piece. */
            if (!ensure_space(l, c->partial.len)) {
                *used = pos;
                return c->state == CONN_OPEN ? STALLED : DROPPED;
            }
            publish(l, c, c->partial.buf, c->partial.len, 1);
            partial_clear(l, c);
            continue;
        }
        if (c->in_partial_list) {
            size_t took;
            int64_t grown;
            enum frame_feed r = frame_partial_feed(&c->partial, framing, max_frame, p + pos,
                                                   len - pos, &took, &grown);
            l->partial_bytes += (uint64_t)grown;
            if (r == FRAME_TOO_LONG) {
                frame_too_long(l, c);
                return DROPPED;
            }
            if (r == FRAME_NOMEM) {
                begin_close(l, c, DISC_NO_MEMORY);
                return DROPPED;
            }
            pos += took;
            if (r == FRAME_NEED_MORE) {
                if (grown > 0)
                    enforce_partial_memory(l);
                return c->state == CONN_OPEN ? CONSUMED : DROPPED;
            }
            c->partial_complete = true;
            continue;
        }
        /* The common case: whole frames straight from the receive buffer, one append. */
        struct frame_scan s;
        frame_scan(framing, p + pos, len - pos, max_frame, &s);
        if (s.complete) {
            if (!ensure_space(l, s.complete)) {
                *used = pos;
                return c->state == CONN_OPEN ? STALLED : DROPPED;
            }
            if (c->state != CONN_OPEN)
                return DROPPED;
            publish(l, c, p + pos, s.complete, s.nframes);
            pos += s.complete;
        }
        if (s.too_long) {
            frame_too_long(l, c);
            return DROPPED;
        }
        if (pos < len)
            partial_track(l, c); /* the rest starts a frame that continues in the next buffer */
    }
    return CONSUMED;
}

static void arm_recv(struct loop *l, struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_for(l, OP_RECV, c);
    io_uring_prep_recv(sqe, c->fd, NULL, 0, 0);
    sqe->ioprio |= IORING_RECV_MULTISHOT;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = l->bufs.bgid;
    c->recv_armed = true;
    c->recv_paused = false;
}

/* The log had no room for @c's data: hold the buffer, stop its recv, queue it to resume. */
static void stall_publisher(struct loop *l, struct conn *c, uint16_t bid, uint32_t len,
                            uint32_t used)
{
    held_push(l, c, bid, len);
    if (c->held_first == bid)
        c->held_off = used;
    if (c->recv_armed && !c->recv_paused) {
        cancel_op(l, OP_RECV, c);
        c->recv_paused = true;
    }
    if (!c->in_blocked)
        l->stats.publisher_stalls++;
    blocked_push(l, c);
}

static void on_recv(struct loop *l, struct conn *c, int res, unsigned flags)
{
    uint16_t bid =
        (flags & IORING_CQE_F_BUFFER) ? (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT) : NO_BID;
    if (!(flags & IORING_CQE_F_MORE))
        c->recv_armed = false;
    if (unlikely(c->state != CONN_OPEN || c->finishing || l->draining)) {
        if (bid != NO_BID)
            ring_bufs_recycle(&l->bufs, bid);
        maybe_finish_close(l, c);
        return;
    }
    if (unlikely(res <= 0)) {
        if (res == 0)
            begin_close(l, c, DISC_EOF);
        else if (res == -ENOBUFS) {
            l->stats.recv_enobufs++; /* buffer ring empty: re-armed once buffers are back */
            blocked_push(l, c);
        } else if (res == -ECANCELED) {
            /* Cancelled for a pause that may be over already: then reading goes on. */
            if (!c->in_blocked && !c->recv_armed)
                arm_recv(l, c);
        } else {
            begin_close(l, c, DISC_RESET);
        }
        return;
    }
    if (unlikely(c->held_first != NO_BID)) {
        /* Already stalled: keep the order, this data waits behind what is held. */
        held_push(l, c, bid, (uint32_t)res);
        return;
    }
    size_t used;
    const uint8_t *p = ring_bufs_ptr(&l->bufs, bid);
    enum consume_result r = consume(l, c, p, (size_t)res, &used);
    if (unlikely(r == STALLED)) {
        stall_publisher(l, c, bid, (uint32_t)res, (uint32_t)used);
        return;
    }
    ring_bufs_recycle(&l->bufs, bid);
    if (!c->recv_armed && c->state == CONN_OPEN && !c->recv_paused && !c->finishing)
        arm_recv(l, c); /* multishot ended (CQ overflow and such): start it again */
}

/* Resume publishers in the order they stalled, as far as the log has room. */
static void resume_blocked(struct loop *l)
{
    while (l->blocked_head != CONN_NONE) {
        struct conn *c = conn_at(l, l->blocked_head);
        if (c->state != CONN_OPEN || c->finishing || l->draining) {
            blocked_pop(l);
            continue;
        }
        while (c->held_first != NO_BID || c->partial_complete) {
            uint16_t bid = c->held_first;
            size_t used = 0;
            enum consume_result r = CONSUMED;
            if (bid == NO_BID) {
                r = consume(l, c, NULL, 0, &used);
            } else {
                const uint8_t *p = ring_bufs_ptr(&l->bufs, bid) + c->held_off;
                r = consume(l, c, p, l->held_len[bid] - c->held_off, &used);
            }
            if (r == STALLED) {
                c->held_off += (uint32_t)used;
                return; /* still full: the first in line keeps its place */
            }
            if (r == DROPPED)
                break;
            c->held_first = l->held_next[bid];
            if (c->held_first == NO_BID)
                c->held_last = NO_BID;
            c->held_off = 0;
            ring_bufs_recycle(&l->bufs, bid);
        }
        blocked_pop(l);
        if (c->state == CONN_OPEN && !c->finishing && !c->recv_armed)
            arm_recv(l, c);
    }
}

/* ===== accepting ===== */

static rlim_t current_fd_limit(void)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0;
}

static void arm_accept(struct loop *l)
{
    /* The kernel reads RLIMIT_NOFILE when an accept is prepared: remember which one it got. */
    l->accept_fd_limit = current_fd_limit();
    struct io_uring_sqe *sqe = sqe_for(l, OP_ACCEPT, NULL);
    if (l->feat.multishot_accept)
        io_uring_prep_multishot_accept(sqe, l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    l->accept_armed = true;
}

static void log_rejects(struct loop *l, bool force)
{
    if (!l->rejects_unlogged || (!force && l->now_ns - l->last_reject_log_ns < NSEC))
        return;
    say_warn("closed %llu new connection(s): --max-clients (%u) reached",
             (unsigned long long)l->rejects_unlogged, l->conns.cap);
    l->rejects_unlogged = 0;
    l->last_reject_log_ns = l->now_ns;
}

static void new_conn(struct loop *l, int fd)
{
    struct conn *c = l->draining ? NULL : conn_table_alloc(&l->conns, fd);
    if (!c) {
        close(fd);
        if (!l->draining) {
            l->stats.rejected_max_clients++;
            l->rejects_unlogged++;
            log_rejects(l, false);
        }
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    socklen_t alen = sizeof(c->peer);
    if (getpeername(fd, &c->peer.sa, &alen) < 0)
        c->peer.sa.sa_family = AF_UNSPEC;
    /* Registered now: it gets every frame whose last byte arrives from here on. */
    c->cursor = l->log.head;
    c->seq = l->log.frames;
    bp_include(l, c);
    l->nopen++;
    l->stats.accepted++;
    char addr[NETADDR_STRLEN];
    say_event("%s connected.", peer_str(c, addr));
    arm_recv(l, c);
}

/* Out of descriptors: shed the waiting connection with the spare fd, then pause accepting. */
static void accept_emfile(struct loop *l, int err)
{
    /* The kernel checked the limit the accept was armed with: if it has been raised since,
     * this error is stale and the connection waiting is welcome. Just arm again. */
    if (err == -EMFILE && current_fd_limit() > l->accept_fd_limit)
        return;
    if (l->spare_fd >= 0) {
        close(l->spare_fd);
        l->spare_fd = -1;
        int fl = fcntl(l->listen_fd, F_GETFL);
        fcntl(l->listen_fd, F_SETFL, fl | O_NONBLOCK);
        /* Shed what waits now (bounded), so those peers hear a close instead of hanging. */
        for (int i = 0; i < 64; i++) {
            int fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                break;
            close(fd);
            l->stats.rejected_emfile++;
        }
        fcntl(l->listen_fd, F_SETFL, fl);
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (l->now_ns - l->last_reject_log_ns >= NSEC) {
        say_warn("accept: %s; shedding new connections for now", strerror(-err));
        l->last_reject_log_ns = l->now_ns;
    }
    l->accept_resume_ns = l->now_ns + ACCEPT_BACKOFF_NS;
    if (l->accept_armed)
        cancel_op(l, OP_ACCEPT, NULL);
}

static void on_accept(struct loop *l, int res, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        l->accept_armed = false;
    if (likely(res >= 0))
        new_conn(l, res);
    else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM)
        accept_emfile(l, res);
    /* Other errors (ECONNABORTED, ECANCELED...) concern one connection: accepting goes on. */
}

/* ===== signals, timer and shutdown ===== */

static void arm_signal_read(struct loop *l)
{
    struct io_uring_sqe *sqe = sqe_for(l, OP_SIGNAL, NULL);
    io_uring_prep_read(sqe, l->signal_fd, &l->siginfo, sizeof(l->siginfo), 0);
}

static void arm_tick(struct loop *l)
{
    struct io_uring_sqe *sqe = sqe_for(l, OP_TICK, NULL);
    io_uring_prep_timeout(sqe, &l->tick_ts, 0, 0);
}

static void start_drain(struct loop *l)
{
    l->draining = true;
    sysd_stopping();
    if (l->httpd_on)
        httpd_set_healthy(&l->httpd, false);
    l->drain_deadline_ns = l->now_ns + (uint64_t)(l->o->drain_timeout * NSEC);
    if (l->accept_armed)
        cancel_op(l, OP_ACCEPT, NULL);
    /* The pending accept keeps the socket alive until its cancellation; the fd can go now. */
    close(l->listen_fd);
    l->listen_fd = -1;
    say_event("Shutting down: flushing %u client(s).", l->nopen);
    for (uint32_t i = l->conns.nactive; i-- > 0;) {
        struct conn *c = conn_at(l, l->conns.active[i]);
        if (c->state != CONN_OPEN)
            continue;
        if (c->recv_armed && !c->recv_paused) {
            cancel_op(l, OP_RECV, c);
            c->recv_paused = true;
        }
        partial_clear(l, c);
        held_release(l, c);
        try_send(l, c); /* closes those with nothing left to send */
    }
}

/* End of the drain (timeout or second signal): whatever is still queued is lost. */
static void stop_now(struct loop *l)
{
    uint64_t bytes = 0;
    uint32_t clients = 0;
    for (uint32_t i = l->conns.nactive; i-- > 0;) {
        struct conn *c = conn_at(l, l->conns.active[i]);
        if (c->state != CONN_OPEN)
            continue;
        uint64_t pending = conn_pending(l, c) + net_unacked(c->fd);
        if (pending) {
            bytes += pending;
            clients++;
        }
        begin_close(l, c, DISC_SHUTDOWN);
    }
    if (bytes)
        say_warn("shutdown: %llu byte(s) queued for %u client(s) were not delivered",
                 (unsigned long long)bytes, clients);
    /* Completions for the cancellations come quickly; do not wait forever for them. */
    if (!l->hard_deadline_ns)
        l->hard_deadline_ns = l->now_ns + 2 * NSEC;
}

static void on_signal(struct loop *l, int res)
{
    if (res == (int)sizeof(l->siginfo)) {
        if (!l->draining)
            start_drain(l);
        else
            stop_now(l);
    }
    arm_signal_read(l);
}

static void print_stats(struct loop *l, double secs)
{
    const struct stats *s = &l->stats, *p = &l->stats_prev;
    say_always("stats: clients=%u frames_in/s=%.0f deliveries/s=%.0f bytes_out/s=%.0f "
               "drops=%llu slow_disconnects=%llu",
               l->nopen, (double)(s->frames_in - p->frames_in) / secs,
               (double)(s->deliveries - p->deliveries) / secs,
               (double)(s->bytes_out - p->bytes_out) / secs, (unsigned long long)s->frames_dropped,
               (unsigned long long)s->disconnects[DISC_SLOW_CONSUMER]);
    l->stats_prev = l->stats;
}

static void on_tick(struct loop *l)
{
    const struct opts *o = l->o;
    if (o->frame_timeout > 0) {
        uint64_t limit = (uint64_t)(o->frame_timeout * NSEC);
        for (uint32_t s = l->partial_head; s != CONN_NONE;) {
            struct conn *c = conn_at(l, s);
            s = c->partial_next;
            if (l->now_ns - c->partial_since_ns >= limit)
                begin_close(l, c, DISC_PARTIAL_TIMEOUT);
        }
    }
    if (o->stats_interval > 0 && l->now_ns >= l->next_stats_ns) {
        print_stats(l, o->stats_interval);
        l->next_stats_ns += (uint64_t)(o->stats_interval * NSEC);
        if (l->next_stats_ns < l->now_ns)
            l->next_stats_ns = l->now_ns + (uint64_t)(o->stats_interval * NSEC);
    }
    log_rejects(l, false);
    if (l->draining) {
        for (uint32_t i = l->conns.nactive; i-- > 0;) {
            struct conn *c = conn_at(l, l->conns.active[i]);
            if (c->state == CONN_OPEN && c->drained)
                drain_done(l, c);
        }
    }
    /* A multishot accept keeps the descriptor limit it was armed with; an operator who changes
     * it (prlimit) expects it to apply, so re-arm with the new one. */
    rlim_t fd_limit = current_fd_limit();
    if (fd_limit != l->fd_limit_seen) {
        say_warn("descriptor limit changed to %llu", (unsigned long long)fd_limit);
        l->fd_limit_seen = fd_limit;
    }
    if (l->accept_armed && fd_limit != l->accept_fd_limit) {
        l->accept_fd_limit = fd_limit;
        cancel_op(l, OP_ACCEPT, NULL);
    }
    if (l->draining && l->now_ns >= l->drain_deadline_ns && !l->hard_deadline_ns)
        stop_now(l);
    if (l->hard_deadline_ns && l->now_ns >= l->hard_deadline_ns)
        l->done = true;
    if (l->httpd_on)
        httpd_tick(&l->httpd, l->now_ns);
    if (l->watchdog_ns && l->now_ns >= l->next_watchdog_ns) {
        sysd_watchdog();
        l->next_watchdog_ns = l->now_ns + l->watchdog_ns / 2;
    }
    if (l->now_ns >= l->next_status_ns && l->nopen != l->status_clients) {
        char status[64];
        snprintf(status, sizeof(status), "%u client(s)", l->nopen);
        sysd_status(status);
        l->status_clients = l->nopen;
        l->next_status_ns = l->now_ns + NSEC;
    }
    arm_tick(l);
}

/* ===== dispatch ===== */

/* The one send in flight to @c completed: move its cursor, then send again or wait. */
static void on_send(struct loop *l, struct conn *c, int res)
{
    c->send_inflight = false;
    if (c->inflight_resid) {
        c->inflight_resid = false;
        if (res > 0 && c->resid) {
            c->resid_off += (uint32_t)res;
            l->stats.bytes_out += (uint64_t)res;
            if (c->resid_off == c->resid_len) {
                resid_free(l, c);
                l->stats.deliveries++;
                stats_observe_batch(&l->stats, 1);
            }
        }
    } else if (res > 0) {
        c->cursor = c->inflight_start + (uint64_t)res;
        l->stats.bytes_out += (uint64_t)res;
        if ((uint32_t)res == c->inflight_len && c->inflight_end_seq > c->seq) {
            uint64_t frames = c->inflight_end_seq - c->seq;
            c->seq = c->inflight_end_seq;
            l->stats.deliveries += frames;
            stats_observe_batch(&l->stats, frames);
        }
    }
    if (c->state != CONN_OPEN) {
        maybe_finish_close(l, c);
        return;
    }
    if (unlikely(res < 0 && res != -EAGAIN)) {
        begin_close(l, c, c->finishing ? DISC_FRAME_TOO_LONG : DISC_RESET);
        return;
    }
    if (res < 0 || (uint32_t)res < c->inflight_len) {
        /* The socket is full. A client being cut for a long frame is not waited for. */
        if (c->finishing) {
            begin_close(l, c, DISC_FRAME_TOO_LONG);
        } else {
            arm_poll(l, c);
            check_quota(l, c);
        }
        return;
    }
    /* The socket took all it was given: this client paces publishers again. */
    bp_include(l, c);
    try_send(l, c);
}

static void handle_cqe(struct loop *l, const struct io_uring_cqe *cqe)
{
    uint64_t u = cqe->user_data;
    enum ud_op op = ud_op(u);
    int res = cqe->res;
    unsigned flags = cqe->flags;

    switch (op) {
    case OP_IGNORE:
        return;
    case OP_ACCEPT:
        on_accept(l, res, flags);
        return;
    case OP_SIGNAL:
        on_signal(l, res);
        return;
    case OP_TICK:
        on_tick(l);
        return;
    case OP_HTTP_ACCEPT:
    case OP_HTTP_RECV:
    case OP_HTTP_SEND:
        httpd_handle(&l->httpd, u, res, flags, l->now_ns);
        return;
    default:
        break;
    }

    struct conn *c = conn_table_lookup(&l->conns, ud_slot(u), ud_gen(u));
    if (unlikely(!c)) {
        /* Cannot happen while slots wait for their last completion; keep buffers safe anyway. */
        if (flags & IORING_CQE_F_BUFFER)
            ring_bufs_recycle(&l->bufs, (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT));
        return;
    }
    switch (op) {
    case OP_RECV:
        on_recv(l, c, res, flags);
        return;
    case OP_SEND_ZC:
        if (flags & IORING_CQE_F_NOTIF) {
            c->zc_notifs--;
            if ((uint32_t)res & IORING_NOTIF_USAGE_ZC_COPIED) {
                c->zc_copied = true;
                l->stats.zc_copied++;
            }
            maybe_finish_close(l, c);
            return;
        }
        if ((flags & IORING_CQE_F_MORE) && c->zc_notifs++ == 0)
            c->zc_pin = c->inflight_start; /* those bytes stay until the notification */
        on_send(l, c, res);
        return;
    case OP_SEND:
        on_send(l, c, res);
        return;
    case OP_POLL:
        c->poll_armed = false;
        if (c->state != CONN_OPEN) {
            maybe_finish_close(l, c);
            return;
        }
        try_send(l, c);
        return;
    default:
        return;
    }
}

/* After a batch of completions: sends for new data, resumed publishers, buffers back. */
static void after_batch(struct loop *l)
{
    /* Publishers paused for room first: what they append goes out in the same flush. */
    if (unlikely(l->blocked_head != CONN_NONE))
        resume_blocked(l);
    ring_bufs_publish(&l->bufs);
    if (l->head_moved) {
        l->head_moved = false;
        flush_clients(l);
    }
    if (unlikely(!l->accept_armed && !l->draining && l->now_ns >= l->accept_resume_ns))
        arm_accept(l);
    if (unlikely(l->draining && l->conns.nactive == 0))
        l->done = true;
}

int loop_run(struct loop *l)
{
    arm_accept(l);
    arm_signal_read(l);
    arm_tick(l);
    l->now_ns = clock_ns();
    l->next_stats_ns = l->now_ns + (uint64_t)(l->o->stats_interval * NSEC);
    while (!l->done) {
        int ret = io_uring_submit_and_wait(&l->ring, 1);
        if (unlikely(ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY &&
                     ret != -ETIME)) {
            say_error("io_uring_submit_and_wait: %s", strerror(-ret));
            return 1;
        }
        l->now_ns = clock_ns();
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            handle_cqe(l, cqe);
            seen++;
        }
        io_uring_cq_advance(&l->ring, seen);
        after_batch(l);
    }
    return 0;
}

/* ===== metrics ===== */

/* /metrics: the counters plus gauges gathered now. O(clients), once per scrape. */
static int render_metrics(void *ctx, struct metrics_buf *out)
{
    struct loop *l = ctx;
    uint64_t pending = 0, max_backlog = 0;
    for (uint32_t i = 0; i < l->conns.nactive; i++) {
        const struct conn *c = conn_at(l, l->conns.active[i]);
        if (c->state != CONN_OPEN)
            continue;
        uint64_t p = conn_pending(l, c);
        pending += p;
        if (p > max_backlog)
            max_backlog = p;
    }
    struct metrics_snapshot m = {
        .stats = &l->stats,
        .version = RINGCAST_VERSION,
        .features = l->features,
        .uptime_seconds = (double)(clock_ns() - l->start_ns) / NSEC,
        .clients = l->nopen,
        .pending_bytes = pending,
        .max_backlog_bytes = max_backlog,
        .partial_bytes = l->partial_bytes,
        .log_capacity_bytes = l->log.cap,
    };
    return metrics_render(&m, out);
}

/* ===== set-up ===== */

/* Keepalive timing is copied to accepted sockets: a vanished peer is found in about 2 min. */
static void set_keepalive_timing(int fd)
{
    int idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static int listen_on(const union netaddr *addr, socklen_t alen, int backlog, int *fd_out, char *err,
                     size_t errlen)
{
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -errno;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr->sa.sa_family == AF_INET6) /* "::" takes IPv4 too, whatever the sysctl says */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (backlog <= 0) {
        FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
        if (!f || fscanf(f, "%d", &backlog) != 1 || backlog <= 0)
            backlog = 4096;
        if (f)
            fclose(f);
    }
    if (bind(fd, &addr->sa, alen) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        char a[NETADDR_STRLEN];
        snprintf(err, errlen, "cannot listen on %s: %s", netaddr_format(addr, a, sizeof(a)),
                 strerror(e));
        close(fd);
        return -e;
    }
    *fd_out = fd;
    return 0;
}

/* The relay and metrics listeners: passed in by systemd, or bound here. */
static int open_listeners(struct loop *l, union netaddr *bound, char *err, size_t errlen)
{
    const struct opts *o = l->o;
    struct sysd_sockets passed;
    if (sysd_take_sockets(&passed, err, errlen) < 0)
        return -EINVAL;
    int metrics_fd = passed.metrics;
    if (passed.relay >= 0) {
        l->listen_fd = passed.relay;
    } else {
        union netaddr addr;
        socklen_t alen;
        if (netaddr_parse(o->address, o->port, &addr, &alen) < 0) {
            snprintf(err, errlen, "invalid address '%s': expected an IPv4 or IPv6 literal",
                     o->address);
            return -EINVAL;
        }
        int ret = listen_on(&addr, alen, o->backlog, &l->listen_fd, err, errlen);
        if (ret < 0)
            return ret;
    }
    set_keepalive_timing(l->listen_fd);
    socklen_t blen = sizeof(*bound);
    getsockname(l->listen_fd, &bound->sa, &blen);

    if (metrics_fd < 0 && o->metrics[0]) {
        union netaddr addr;
        socklen_t alen;
        netaddr_parse_hostport(o->metrics, &addr, &alen); /* validated by opts */
        int ret = listen_on(&addr, alen, 64, &metrics_fd, err, errlen);
        if (ret < 0)
            return ret;
    }
    if (metrics_fd >= 0) {
        httpd_init(&l->httpd, &l->ring, &l->bufs, metrics_fd, render_metrics, l);
        l->httpd_on = true;
    }
    return 0;
}

/* Raise the soft descriptor limit to the hard one; returns the clients that then fit. */
static uint32_t fit_descriptor_limit(uint32_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return want;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)want + FD_RESERVE)
        return want;
    uint32_t fit = rl.rlim_cur > FD_RESERVE + 1 ? (uint32_t)(rl.rlim_cur - FD_RESERVE) : 1;
    say_warn("--max-clients %u does not fit the descriptor limit (%llu): using %u", want,
             (unsigned long long)rl.rlim_cur, fit);
    return fit;
}

static uint64_t log_size_for(const struct opts *o)
{
    /* Reading clients stay within one quota (back-pressure); a stuck one is cut at most a
     * receive batch past it. So one quota, a batch and two of the longest frames always fit. */
    uint64_t frame = o->max_frame + FRAME_LEN32_HEADER;
    return o->max_queue + 2 * frame + (uint64_t)RECV_BUF_COUNT * RECV_BUF_SIZE;
}

struct loop *loop_create(const struct opts *o, char *err, size_t errlen)
{
    struct loop *l = rc_calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->o = o;
    l->listen_fd = l->signal_fd = l->spare_fd = -1;
    l->blocked_head = l->blocked_tail = l->partial_head = CONN_NONE;
    l->tick_ts.tv_nsec = (long long)TICK_NS;
    l->quota = o->max_queue + FRAME_LEN32_HEADER;
    l->pace = l->quota < PACE_BYTES ? l->quota : PACE_BYTES;
    l->now_ns = clock_ns();

    int ret = ring_setup(&l->ring, SQ_ENTRIES, CQ_ENTRIES, &l->feat, err, errlen);
    if (ret < 0)
        goto err;
    l->ring_ready = true;
    if (o->zerocopy == ZC_ON && !l->feat.send_zc) {
        snprintf(err, errlen,
                 "--zerocopy on needs IORING_OP_SEND_ZC (Linux 6.0), which this kernel lacks");
        goto err;
    }

    ret = ring_bufs_init(&l->ring, &l->bufs, RECV_BGID, RECV_BUF_COUNT, RECV_BUF_SIZE);
    l->held_next = rc_calloc(RECV_BUF_COUNT, sizeof(*l->held_next));
    l->held_len = rc_calloc(RECV_BUF_COUNT, sizeof(*l->held_len));
    if (ret < 0 || !l->held_next || !l->held_len) {
        snprintf(err, errlen, "cannot set up receive buffers: %s",
                 strerror(ret < 0 ? -ret : ENOMEM));
        goto err;
    }
    uint64_t log_bytes = log_size_for(o);
    ret = bcast_init(&l->log, log_bytes, log_bytes / 512);
    if (ret < 0) {
        snprintf(err, errlen, "cannot map the broadcast log (%llu bytes): %s",
                 (unsigned long long)log_bytes, strerror(-ret));
        goto err;
    }

    uint32_t max_clients = fit_descriptor_limit(o->max_clients);
    l->fd_limit_seen = current_fd_limit();
    if (conn_table_init(&l->conns, max_clients) < 0) {
        snprintf(err, errlen, "out of memory for %u client slots", max_clients);
        goto err;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    l->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (l->signal_fd < 0) {
        snprintf(err, errlen, "signalfd: %s", strerror(errno));
        goto err;
    }

    l->start_ns = l->now_ns;
    ring_features_describe(&l->feat, l->features, sizeof(l->features));
    union netaddr bound;
    if (open_listeners(l, &bound, err, errlen) < 0)
        goto err;
    char addr[NETADDR_STRLEN];
    say_always("Server started at: %s", netaddr_format(&bound, addr, sizeof(addr)));
    char status[NETADDR_STRLEN + 16];
    snprintf(status, sizeof(status), "listening on %s", addr);
    if (l->httpd_on) {
        union netaddr maddr;
        socklen_t mlen = sizeof(maddr);
        getsockname(l->httpd.listen_fd, &maddr.sa, &mlen);
        say_event("Metrics at: http://%s/metrics", netaddr_format(&maddr, addr, sizeof(addr)));
    }
    l->watchdog_ns = sysd_watchdog_period_ns();
    sysd_ready(status);
    if (say_verbosity() == VERB_VERBOSE) {
        say_event("io_uring features: %s; log %llu MiB; max clients %u", l->features,
                  (unsigned long long)(l->log.cap >> 20), max_clients);
    }
    return l;
err:
    loop_destroy(l);
    return NULL;
}

void loop_destroy(struct loop *l)
{
    if (!l)
        return;
    for (uint32_t i = 0; l->conns.slots && i < l->conns.nactive; i++) {
        struct conn *c = conn_at(l, l->conns.active[i]);
        if (!c->fd_closed)
            close(c->fd);
        frame_partial_reset(&c->partial);
        rc_free(c->resid);
    }
    conn_table_destroy(&l->conns);
    httpd_destroy(&l->httpd);
    if (l->ring_ready) {
        ring_bufs_destroy(&l->ring, &l->bufs);
        io_uring_queue_exit(&l->ring);
    }
    bcast_destroy(&l->log);
    rc_free(l->held_next);
    rc_free(l->held_len);
    if (l->listen_fd >= 0)
        close(l->listen_fd);
    if (l->signal_fd >= 0)
        close(l->signal_fd);
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    rc_free(l);
}
