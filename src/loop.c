/*
 * The server loop: the data path as one walk. Every step is a completion of one ring:
 *
 *   listen sockets --multishot accept each--> conn table         (listen.c, accept.c)
 *   client socket --multishot recv, provided buffers--> ingest --append once--> broadcast log
 *   broadcast log --fanout: one MSG_DONTWAIT send in flight per client, all it has pending-->
 *   client sockets; a short send waits for POLLOUT.
 *
 * Sending (plans, zero-copy, judging the quota) is in loop_send.c. CQEs are handled in batches.
 * After each batch, in this order: paused publishers are resumed as far as flow control allows,
 * every client is judged against its quota and given its send, the verdicts of the batch are
 * applied (closes), recvs are re-armed, and the slots whose last completion came are freed. Policy
 * code (ingest, fanout, flow) only returns verdicts; closing happens here, at one point per batch,
 * so nothing can free a connection under its caller.
 */
#include "loop_int.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "ringcast/alloc.h"
#include "say.h"

/* ===== helpers ===== */

uint64_t loop_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ud_make(enum ud_op op, const struct conn *c)
{
    return ud_pack(op, c ? c->gen : 0, c ? c->slot : 0);
}

struct io_uring_sqe *loop_sqe(struct loop *l, enum ud_op op, const struct conn *c)
{
    struct io_uring_sqe *sqe = ring_get_sqe(&l->ring);
    io_uring_sqe_set_data64(sqe, ud_make(op, c));
    return sqe;
}

void loop_cancel(struct loop *l, enum ud_op op, const struct conn *c)
{
    struct io_uring_sqe *sqe = loop_sqe(l, OP_IGNORE, NULL);
    io_uring_prep_cancel64(sqe, ud_make(op, c), 0);
}

/* ===== slot lists ===== */

#define LIST_PUSH(l, list, c, field)                                                               \
    do {                                                                                           \
        (c)->field = CONN_NONE;                                                                    \
        if ((list)->tail == CONN_NONE)                                                             \
            (list)->head = (c)->slot;                                                              \
        else                                                                                       \
            conn_at((l), (list)->tail)->field = (c)->slot;                                         \
        (list)->tail = (c)->slot;                                                                  \
    } while (0)

/* Take the whole list; the caller walks it through the field. */
static uint32_t list_take(struct slot_list *list)
{
    uint32_t head = list->head;
    list->head = list->tail = CONN_NONE;
    return head;
}

/* ===== receiving ===== */

static void arm_recv(struct loop *l, struct conn *c)
{
    struct io_uring_sqe *sqe = loop_sqe(l, OP_RECV, c);
    io_uring_prep_recv(sqe, c->fd, NULL, 0, 0);
    sqe->ioprio |= IORING_RECV_MULTISHOT;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = l->bufs.bgid;
    recvctl_armed(&c->rx);
}

/* Do what recvctl asked. Arming waits for the end of the batch: buffers recycled in this batch
 * are back by then, so a recv that ended on ENOBUFS does not fail again at once. */
static void recv_act(struct loop *l, struct conn *c, enum recvctl_action a)
{
    if (a == RECVCTL_CANCEL) {
        loop_cancel(l, OP_RECV, c);
    } else if (a == RECVCTL_ARM && !c->in_rearm) {
        c->in_rearm = true;
        LIST_PUSH(l, &l->rearm, c, next_rearm);
    }
}

void loop_stop_reading(struct loop *l, struct conn *c)
{
    recv_act(l, c, recvctl_want(&c->rx, false));
}

/* Flow control paused @c: it is read again once its frames' leading receiver catches up. */
static void pause_publisher(struct loop *l, struct conn *c)
{
    if (c->paused)
        return;
    c->paused = true;
    l->stats.publisher_stalls++;
    LIST_PUSH(l, &l->paused, c, next_paused);
    loop_stop_reading(l, c);
}

static void frame_too_long(struct loop *l, struct conn *c)
{
    l->stats.protocol_errors++;
    ingest_close(&l->ingest, &c->in);
    loop_stop_reading(l, c);
    if (l->o->framing != FRAMING_LINE) {
        loop_doom(l, c, DISC_FRAME_TOO_LONG);
        return;
    }
    /* Line mode: the client first gets the rest of a frame in progress, then one error line;
     * unless its socket is full already: a client that is not reading is not waited for (its
     * POLLOUT may never come, and its cursor would pin the log meanwhile). */
    if (c->poll_armed) {
        loop_doom(l, c, DISC_FRAME_TOO_LONG);
        return;
    }
    flow_forget(&l->flow, c->slot);
    fanout_finish(&l->fanout, &c->out);
    loop_try_send(l, c);
}

/* Act on what ingest said about @c's bytes; @rest is what it did not take. */
static void ingest_outcome(struct loop *l, struct conn *c, enum ingest_result r,
                           const uint8_t *rest, size_t rest_len)
{
    switch (r) {
    case INGEST_DONE:
    case INGEST_CLOSED:
        break;
    case INGEST_PAUSED:
        if (ingest_stash(&l->ingest, &c->in, rest, rest_len) < 0) {
            loop_doom(l, c, DISC_NO_MEMORY);
            return;
        }
        pause_publisher(l, c);
        break;
    case INGEST_TOO_LONG:
        frame_too_long(l, c);
        return;
    case INGEST_NOMEM:
        loop_doom(l, c, DISC_NO_MEMORY);
        return;
    }
    /* The frame timeout runs from the first byte of an incomplete frame. */
    if (!ingest_mid_frame(&c->in))
        c->partial_since_ns = 0;
    else if (!c->partial_since_ns)
        c->partial_since_ns = l->now_ns;
}

static void on_recv(struct loop *l, struct conn *c, int res, unsigned flags)
{
    bool has_buf = flags & IORING_CQE_F_BUFFER;
    uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
    recv_act(l, c, recvctl_completion(&c->rx, flags & IORING_CQE_F_MORE));
    if (unlikely(!conn_live(c) || c->out.finishing || l->draining || c->auth == CONN_AUTH_FAILED)) {
        if (has_buf)
            ring_bufs_recycle(&l->bufs, bid);
        return;
    }
    if (unlikely(res <= 0)) {
        if (res == 0 && (c->paused || ingest_waiting(&c->in))) {
            /* It sent its last bytes and left while paused: they were accepted, so they are
             * relayed first (resume_paused closes it once they are in the log). */
            c->eof = true;
            loop_stop_reading(l, c);
        } else if (res == 0) {
            loop_doom(l, c, DISC_EOF);
        } else if (res == -ENOBUFS)
            l->stats.recv_enobufs++; /* the ring was empty: re-armed after the batch */
        else if (res != -ECANCELED)
            loop_doom(l, c, DISC_RESET);
        return;
    }
    const uint8_t *p = ring_bufs_ptr(&l->bufs, bid);
    size_t len = (size_t)res;
    if (unlikely(c->proxy_pending)) { /* before anything, TLS included */
        size_t used = accept_proxy_gate(l, c, p, len);
        p += used;
        len -= used;
    }
    if (likely(len && conn_live(c) && !c->proxy_pending)) {
        if (unlikely(c->tls))
            tls_on_recv(l, c, p, len);
        else
            loop_conn_input(l, c, p, len);
    }
    /* The buffer goes back at once: a paused publisher keeps only its own bytes, aside. */
    ring_bufs_recycle(&l->bufs, bid);
}

void loop_conn_input(struct loop *l, struct conn *c, const uint8_t *p, size_t len)
{
    if (unlikely(!listen_admit(l, c, &p, &len))) /* AUTH and its listener's role first */
        return;
    size_t used = 0;
    enum ingest_result r;
    if (unlikely(c->paused || ingest_waiting(&c->in)))
        r = INGEST_PAUSED; /* bytes that raced the pause wait behind what is already aside */
    else
        r = ingest_feed(&l->ingest, &c->in, c->slot, &c->out, p, len, &used);
    ingest_outcome(l, c, r, p + used, len - used);
}

/* Resume paused publishers in the order they paused, as far as flow control allows. Each is
 * tried once per batch; those that must wait again go to the back, so no publisher can keep
 * another waiting for good. */
static void resume_paused(struct loop *l)
{
    uint32_t last = l->paused.tail, n = 0;
    bool more = l->paused.head != CONN_NONE;
    while (more && n++ < RESUME_PER_BATCH) {
        struct conn *c = conn_at(l, l->paused.head);
        more = c->slot != last;
        l->paused.head = c->next_paused;
        if (l->paused.head == CONN_NONE)
            l->paused.tail = CONN_NONE;
        if (!conn_live(c) || c->out.finishing || l->draining) {
            c->paused = false;
            continue;
        }
        enum ingest_result r = ingest_resume(&l->ingest, &c->in, c->slot, &c->out);
        if (r == INGEST_PAUSED) {
            LIST_PUSH(l, &l->paused, c, next_paused);
            continue;
        }
        c->paused = false;
        ingest_outcome(l, c, r, NULL, 0);
        if (conn_live(c) && c->eof)
            loop_doom(l, c, DISC_EOF);
        else if (conn_live(c) && !c->out.finishing)
            recv_act(l, c, recvctl_want(&c->rx, true));
    }
}

/* Rare (a paused publisher closing): a walk is fine. */
static void paused_remove(struct loop *l, struct conn *c)
{
    uint32_t prev = CONN_NONE;
    for (uint32_t s = l->paused.head; s != CONN_NONE; prev = s, s = conn_at(l, s)->next_paused) {
        if (s != c->slot)
            continue;
        if (prev == CONN_NONE)
            l->paused.head = c->next_paused;
        else
            conn_at(l, prev)->next_paused = c->next_paused;
        if (l->paused.tail == s)
            l->paused.tail = prev;
        break;
    }
    c->paused = false;
}

/* The log is full: release everything behind the oldest byte some connection still pins (a
 * pub-only client pins none: fanout_mute). O(clients); runs only when the log is full, which the
 * quota makes rare. */
bool loop_make_room(void *ctx, size_t len)
{
    struct loop *l = ctx;
    uint64_t keep = l->log.head;
    for (uint32_t i = 0; i < l->conns.nactive; i++) {
        const struct conn *c = conn_at(l, l->conns.active[i]);
        uint64_t pin = fanout_pin(&l->fanout, &c->out, c->state == CONN_OPEN);
        if (pin < keep)
            keep = pin;
    }
    bcast_release(&l->log, keep);
    return bcast_fits(&l->log, len);
}

static void log_frames(void *ctx, uint32_t origin, const uint8_t *p, size_t len)
{
    struct loop *l = ctx;
    if (likely(say_verbosity() != VERB_VERBOSE))
        return;
    char addr[NETADDR_STRLEN], text[4 * 200 + 4];
    netaddr_format(&conn_at(l, origin)->peer, addr, sizeof(addr));
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

/* Every append moves the head: the clients need their sends after the batch. */
void loop_on_frames(void *ctx, uint32_t origin, const uint8_t *p, size_t len)
{
    struct loop *l = ctx;
    l->head_moved = true;
    log_frames(ctx, origin, p, len);
}

/* ===== closing ===== */

void loop_doom(struct loop *l, struct conn *c, enum disconnect_reason reason)
{
    if (!conn_live(c))
        return;
    c->doomed = true;
    c->reason = (uint8_t)reason;
    flow_forget(&l->flow, c->slot);
    LIST_PUSH(l, &l->doomed, c, next_doomed);
}

/* Free the slot once the kernel holds nothing of this connection any more (after the batch). */
void loop_maybe_finish_close(struct loop *l, struct conn *c)
{
    if (c->state != CONN_CLOSING || c->rx.armed || c->poll_armed || c->out.inflight || c->in_reap ||
        (c->tls && c->tls->sending))
        return;
    fanout_release(&l->fanout, &c->out); /* no send points into its resid any more */
    if (c->out.zc_count) {
        /* Notifications wait for the socket to drop our pages: reset it so that happens now. */
        if (!c->fd_closed) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(c->fd);
            c->fd_closed = true;
        }
        return;
    }
    c->in_reap = true;
    LIST_PUSH(l, &l->reap, c, next_reap);
}

/* Start closing @c: log it, drop what it holds, cancel what is outstanding. */
static void begin_close(struct loop *l, struct conn *c)
{
    enum disconnect_reason reason = (enum disconnect_reason)c->reason;
    c->state = CONN_CLOSING;
    l->nopen--;
    if (!c->quiet_close)
        l->stats.disconnects[reason]++;
    char addr[NETADDR_STRLEN];
    netaddr_format(&c->peer, addr, sizeof(addr));
    if (reason == DISC_AUTH_FAILED) /* never the token: only what was wrong */
        say_event("%s disconnected (auth failed: %s).", addr,
                  auth_failure_text((enum auth_failure)c->fail_detail));
    else if (c->quiet_close)
        ; /* refused once its PROXY header told who it is: counted and logged as a refusal */
    else if (reason == DISC_PROXY_FAILED)
        say_event("%s disconnected (proxy header: %s).", addr,
                  c->close_note ? c->close_note : "timeout");
    else if (reason == DISC_TLS_FAILED)
        say_event("%s disconnected (tls: %s).", addr,
                  tls_failure_text((enum tls_failure)c->fail_detail));
    else
        say_event("%s disconnected%s", addr, stats_reason_suffix(reason));
    gate_release(c);
    ingest_close(&l->ingest, &c->in);
    if (c->paused)
        paused_remove(l, c); /* the list outlives the batch; the slot may not */
    loop_stop_reading(l, c);
    if (c->poll_armed)
        loop_cancel(l, OP_POLL, c);
    loop_maybe_finish_close(l, c);
}

/* --max-partial-memory: memory outside the log held for clients. Past it, the clients holding
 * drop remainders go first (they are slow consumers), largest first; then the largest holder of
 * incomplete frames or paused bytes. O(clients) per victim; runs only past the limit. */
static uint64_t held_by(const struct conn *c, int pass)
{
    return pass == 0 ? c->out.resid_len : ingest_held(&c->in) + c->out.resid_len;
}

static void enforce_held_memory(struct loop *l)
{
    /* Count live clients only: a closing one's memory goes with its last completion. */
    uint64_t held = 0;
    for (uint32_t i = 0; i < l->conns.nactive; i++) {
        const struct conn *c = conn_at(l, l->conns.active[i]);
        if (conn_live(c))
            held += held_by(c, 1);
    }
    for (int pass = 0; pass < 2 && held > l->o->max_partial_memory;) {
        struct conn *victim = NULL;
        uint64_t most = 0;
        for (uint32_t i = 0; i < l->conns.nactive; i++) {
            struct conn *c = conn_at(l, l->conns.active[i]);
            if (conn_live(c) && held_by(c, pass) > most) {
                most = held_by(c, pass);
                victim = c;
            }
        }
        if (!victim) {
            pass++;
            continue;
        }
        held -= held_by(victim, 1);
        loop_doom(l, victim, DISC_PARTIAL_MEMORY);
    }
}

void loop_apply_verdicts(struct loop *l)
{
    for (uint32_t s = list_take(&l->doomed); s != CONN_NONE;) {
        struct conn *c = conn_at(l, s);
        s = c->next_doomed;
        if (c->state == CONN_OPEN)
            begin_close(l, c);
    }
    for (uint32_t s = list_take(&l->rearm); s != CONN_NONE;) {
        struct conn *c = conn_at(l, s);
        s = c->next_rearm;
        c->in_rearm = false;
        if (conn_live(c) && c->rx.want && !c->rx.armed)
            arm_recv(l, c);
    }
    for (uint32_t s = list_take(&l->reap); s != CONN_NONE;) {
        struct conn *c = conn_at(l, s);
        s = c->next_reap;
        if (!c->fd_closed)
            close(c->fd);
        tls_conn_release(l, c);
        accept_forget(l, c);
        conn_table_free(&l->conns, c);
    }
}

void loop_conn_start_receiving(struct loop *l, struct conn *c)
{
    /* Registered now: it gets every frame whose last byte arrives from here on. */
    fanout_join(&l->fanout, &c->out, c->slot);
    /* The kernel copies on loopback whatever we ask: `auto` never tries zero-copy there, so a
     * local reader that stops cannot pin log pages (see fanout_judge). */
    c->out.zc_copied = netaddr_is_loopback(&c->peer);
    flow_advance(&l->flow, c->slot, c->out.vcursor);
}

void loop_gate_passed(struct loop *l, struct conn *c)
{
    if (!conn_gated(c) && c->role != ROLE_PUB && conn_live(c))
        loop_conn_start_receiving(l, c); /* from the head: nothing from before */
}

void loop_conn_open(struct loop *l, struct conn *c)
{
    if (c->role != ROLE_PUB && !conn_gated(c)) {
        loop_conn_start_receiving(l, c);
    } else {
        /* Never a receiver (pub-only), or not yet (AUTH first): no sends, no quota, no flow,
         * no pin. */
        fanout_join(&l->fanout, &c->out, c->slot);
        fanout_mute(&c->out);
    }
    l->nopen++;
    recv_act(l, c, recvctl_want(&c->rx, true));
}

/* ===== completions ===== */

static void on_conn_cqe(struct loop *l, enum ud_op op, struct conn *c, int res, unsigned flags)
{
    switch (op) {
    case OP_RECV:
        on_recv(l, c, res, flags);
        break;
    case OP_SEND_ZC:
        if (flags & IORING_CQE_F_NOTIF) {
            fanout_zc_notified(&c->out);
            if ((uint32_t)res & IORING_NOTIF_USAGE_ZC_COPIED) {
                c->out.zc_copied = true;
                l->stats.zc_copied++;
            }
            break;
        }
        if (flags & IORING_CQE_F_MORE) /* those bytes stay the kernel's until the notification */
            fanout_zc_pending(&c->out, c->out.inflight_start);
        if (unlikely(res == -ENOMEM)) {
            /* Pinning the pages was refused (RLIMIT_MEMLOCK without a registered log): plain
             * sends from now on; this one is retried as soon as the socket says so. */
            if (!l->zc_refused)
                say_event("zero-copy: the kernel refused to pin pages (%s); copying instead",
                          strerror(-res));
            l->zc_refused = true;
            res = -EAGAIN;
        }
        loop_on_send(l, c, res);
        break;
    case OP_SEND:
        if (c->tls) /* a TLS client's sends are its ciphertext */
            tls_on_send(l, c, res);
        else
            loop_on_send(l, c, res);
        break;
    case OP_POLL:
        c->poll_armed = false;
        loop_try_send(l, c);
        break;
    default:
        break;
    }
    if (c->state == CONN_CLOSING)
        loop_maybe_finish_close(l, c);
}

static void handle_cqe(struct loop *l, const struct io_uring_cqe *cqe)
{
    uint64_t u = cqe->user_data;
    enum ud_op op = ud_op(u);
    switch (op) {
    case OP_IGNORE:
        return;
    case OP_ACCEPT:
        accept_on_cqe(l, ud_slot(u), cqe->res, cqe->flags);
        return;
    case OP_SIGNAL:
        lifecycle_on_signal(l, cqe->res);
        return;
    case OP_TICK:
        lifecycle_on_tick(l);
        return;
    case OP_HTTP_ACCEPT:
    case OP_HTTP_RECV:
    case OP_HTTP_SEND:
        httpd_handle(&l->httpd, u, cqe->res, cqe->flags, l->now_ns);
        return;
    default:
        break;
    }
    struct conn *c = conn_table_lookup(&l->conns, ud_slot(u), ud_gen(u));
    if (unlikely(!c)) {
        /* Cannot happen while slots wait for their last completion; keep buffers safe anyway. */
        if (cqe->flags & IORING_CQE_F_BUFFER)
            ring_bufs_recycle(&l->bufs, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        return;
    }
    on_conn_cqe(l, op, c, cqe->res, cqe->flags);
}

/* A leader left: find the two most advanced receivers again. O(clients), once per batch. */
static void rebuild_flow(struct loop *l)
{
    flow_reset(&l->flow);
    for (uint32_t i = 0; i < l->conns.nactive; i++) {
        const struct conn *c = conn_at(l, l->conns.active[i]);
        if (conn_live(c) && !c->out.finishing && fanout_receives(&c->out))
            flow_advance(&l->flow, c->slot, c->out.vcursor);
    }
}

/* After a batch of completions: the one place where verdicts turn into closes. */
static void after_batch(struct loop *l)
{
    if (unlikely(flow_stale(&l->flow)))
        rebuild_flow(l);
    /* Paused publishers first: what they append goes out in the same flush. A pack that held
     * them is counted again: its receivers may have caught up in this batch. */
    if (unlikely(l->paused.head != CONN_NONE)) {
        if (flow_pack_holds(&l->flow, l->log.vhead))
            loop_count_pack(l);
        resume_paused(l);
    }
    if (unlikely(l->held_bytes > l->o->max_partial_memory))
        enforce_held_memory(l);
    if (l->head_moved) {
        l->head_moved = false;
        loop_flush_clients(l);
    }
    loop_apply_verdicts(l);
    if (unlikely(flow_stale(&l->flow))) /* a leader went with the verdicts */
        rebuild_flow(l);
    ring_bufs_publish(&l->bufs);
    if (unlikely(l->accept_idle && !l->draining && l->now_ns >= l->accept_resume_ns))
        accept_arm(l);
    if (unlikely(l->draining && l->conns.nactive == 0))
        l->done = true;
}

int loop_run(struct loop *l)
{
    accept_arm(l);
    lifecycle_arm(l);
    l->now_ns = loop_clock_ns();
    l->next_stats_ns = l->now_ns + (uint64_t)(l->o->stats_interval * NSEC);
    while (!l->done) {
        int ret = io_uring_submit_and_wait(&l->ring, 1);
        l->msg_used = 0; /* every sendmsg's header was taken with its SQE */
        if (unlikely(ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY &&
                     ret != -ETIME)) {
            say_error("io_uring_submit_and_wait: %s", strerror(-ret));
            return 1;
        }
        l->now_ns = loop_clock_ns();
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
