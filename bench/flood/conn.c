/* Connections: see conn.h. */
#include "conn.h"

#include "tls.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECT_WINDOW FLOOD_CONNECT_WINDOW

void conn_set_state(struct conn *c, enum cstate s)
{
    enum cstate old = (enum cstate)LD(c->state);
    bool was_live = old == CS_OPEN || old == CS_SUBSCRIBING;
    bool live = s == CS_OPEN || s == CS_SUBSCRIBING;
    if (was_live != live)
        ADD(c->w->live, live ? 1 : -1);
    ST(c->state, (uint8_t)s);
}

void conn_kill(struct conn *c)
{
    if (c->fd >= 0) {
        /* Ends the requests still in flight on it (they hold the file open). */
        shutdown(c->fd, SHUT_RDWR);
        close(c->fd);
        c->fd = -1;
    }
    if (LD(c->state) == CS_CONNECTING)
        c->w->connecting--;
    conn_set_state(c, CS_DEAD);
    if (c->pub) {
        c->pub->gen_done = true;
        c->pub->out_len = c->pub->out_off = 0;
        ST(c->pub->done, true);
    }
}

void conn_failed(struct conn *c, const char *why)
{
    struct flood *run = c->w->run;
    char name[64];
    conn_name(c, name, sizeof(name));
    if (c->role == ROLE_SLOW && !run_in_setup(run)) {
        c->slow_closed = true;
        conn_kill(c);
        return;
    }
    if (run_in_setup(run))
        die("%s: %s during set-up", name, why);
    run_error(run, "%s: %s (%s)", name, why, phase_name(run_phase(run)));
    conn_kill(c);
}

void conn_failed_res(struct conn *c, int res)
{
    if (res == 0)
        conn_failed(c, "connection closed by the server");
    else
        conn_failed(c, strerror(-res));
}

void conn_send_all(struct conn *c, const char *buf, size_t len, const char *what)
{
    if (c->tls) {
        errno = 0;
        if (!tls_send_now(c, buf, len)) {
            char name[64];
            die("%s: cannot send %s over TLS: %s", conn_name(c, name, sizeof(name)), what,
                errno ? strerror(errno) : "short write");
        }
        return;
    }
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n != (ssize_t)len) {
        char name[64];
        die("%s: cannot send %s: %s", conn_name(c, name, sizeof(name)), what,
            n < 0 ? strerror(errno) : "short write");
    }
}

void conn_send_now(struct conn *c, const char *buf, size_t len)
{
    if (c->tls)
        (void)tls_send_now(c, buf, len);
    else
        (void)!send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* --auth: ringcast's AUTH frame, in the run's framing (docs/PROTOCOL.md, "The AUTH frame"). */
static void send_auth(struct conn *c)
{
    const char *token = c->w->o->auth;
    char frame[4 + 5 + 256 + 1];
    size_t tl = strlen(token), n = 0;
    if (c->w->o->proto == PROTO_LEN32) {
        uint32_t len = (uint32_t)(5 + tl);
        frame[0] = (char)(len >> 24);
        frame[1] = (char)(len >> 16);
        frame[2] = (char)(len >> 8);
        frame[3] = (char)len;
        n = 4;
    }
    memcpy(frame + n, "AUTH ", 5);
    memcpy(frame + n + 5, token, tl);
    n += 5 + tl;
    if (c->w->o->proto == PROTO_LINE)
        frame[n++] = '\n';
    conn_send_all(c, frame, n, "AUTH");
}

/* Whether the connection's recv discards the data (MSG_TRUNC): byte-counting subscribers with
 * --read-mode trunc, and publishers of the framings that get no replies worth reading. */
static bool recv_truncates(const struct conn *c)
{
    const struct flood_opts *o = c->w->o;
    if (c->tls) /* every record must be read, the handshake's first */
        return false;
    if (c->role == ROLE_PUB)
        return o->proto == PROTO_LINE || o->proto == PROTO_LEN32;
    return !c->parse && !c->skim && o->read_mode == READ_TRUNC;
}

void conn_recv_arm(struct conn *c)
{
    struct worker *w = c->w;
    bool trunc = recv_truncates(c);
    struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
    /* Verified subscribers take each read's kernel receive timestamp too (SO_TIMESTAMPNS, set in
     * on_connected): a multishot recvmsg into the same buffers, unpacked by sub_unpack. */
    c->recv_msg = c->role == ROLE_SUB && c->verify && !trunc;
    if (c->recv_msg)
        io_uring_prep_recvmsg_multishot(sqe, c->fd, &w->rx_msg, 0);
    else
        io_uring_prep_recv(sqe, c->fd, NULL, 0, trunc ? MSG_TRUNC : 0);
    sqe->ioprio |= IORING_RECV_MULTISHOT;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = trunc ? w->tbufs.bgid : w->pbufs.bgid;
    io_uring_sqe_set_data64(sqe, conn_ud(c, trunc ? OP_RECV_T : OP_RECV_P));
    c->recv_armed = true;
    c->recv_trunc = trunc;
}

static void recv_cancel(struct conn *c)
{
    struct io_uring_sqe *sqe = ring_get_sqe(&c->w->ring);
    io_uring_prep_cancel64(sqe, conn_ud(c, c->recv_trunc ? OP_RECV_T : OP_RECV_P), 0);
    io_uring_sqe_set_data64(sqe, OP_IGNORE);
}

bool conn_wants_recv(const struct conn *c)
{
    if (c->role == ROLE_SLOW)
        return false;
    return !(c->lazy && !c->parse);
}

void conn_recv_refresh(struct conn *c)
{
    if (c->fd < 0 || LD(c->state) == CS_DEAD || !c->recv_armed)
        return;
    if (!conn_wants_recv(c) || recv_truncates(c) != c->recv_trunc)
        recv_cancel(c);
}

void conn_nats_control(struct conn *c, size_t kind, const char *line, size_t len)
{
    struct flood *run = c->w->run;
    if (kind == MSG_CTL_PING) {
        if (c->role == ROLE_PUB)
            c->pub->pong_due = true;
        else
            conn_send_now(c, "PONG\r\n", 6);
    } else if (kind == MSG_CTL_PONG && LD(c->state) == CS_SUBSCRIBING) {
        conn_set_state(c, CS_OPEN);
        if (c->role == ROLE_SUB)
            ADD(c->w->subs_open, 1);
    } else if (kind == MSG_CTL_ERR) {
        char name[64], shown[128];
        size_t k = len < sizeof(shown) - 1 ? len : sizeof(shown) - 1;
        memcpy(shown, line, k);
        while (k && (shown[k - 1] == '\r' || shown[k - 1] == '\n'))
            k--;
        shown[k] = 0;
        if (run_in_setup(run))
            die("%s: the server says \"%s\"", conn_name(c, name, sizeof(name)), shown);
        run_error(run, "%s: the server says \"%s\"", conn_name(c, name, sizeof(name)), shown);
    }
}

static void on_connected(struct conn *c)
{
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Verified subscribers get the kernel's receive time of each read (driver_overhead_us). */
    if (c->role == ROLE_SUB && c->verify &&
        setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0)
        die("setsockopt SO_TIMESTAMPNS: %s", strerror(errno));
    if (c->w->run->tls && c->role != ROLE_CHURN)
        tls_conn_start(c); /* conn_session_start once the handshake is done */
    else
        conn_session_start(c);
}

void conn_session_start(struct conn *c)
{
    struct worker *w = c->w;
    const struct flood_opts *o = w->o;
    const struct msgfmt *fmt = &w->run->fmt;
    w->connecting--;
    ADD(w->connected, 1);
    if (o->auth)
        send_auth(c);
    if (c->role == ROLE_PUB) {
        conn_set_state(c, CS_OPEN);
        if (o->proto == PROTO_NATS)
            conn_send_all(c, fmt->hello, fmt->hello_len, "CONNECT");
        if (!c->recv_armed)
            conn_recv_arm(c);
        return;
    }
    if (o->proto == PROTO_REDIS || o->proto == PROTO_NATS) {
        conn_send_all(c, fmt->subscribe, fmt->subscribe_len,
                      o->proto == PROTO_REDIS ? "SUBSCRIBE" : "CONNECT/SUB");
        conn_set_state(c, CS_SUBSCRIBING);
    } else {
        conn_set_state(c, CS_OPEN);
        if (c->role == ROLE_SUB)
            ADD(w->subs_open, 1);
    }
    if (c->role == ROLE_SLOW) {
        /* Slow subscribers parse their set-up replies with plain reads (see sub_slow_reads). */
        return;
    }
    if (!c->recv_armed)
        conn_recv_arm(c);
}

void conn_open(struct conn *c)
{
    struct worker *w = c->w;
    const struct flood_opts *o = w->o;
    const struct addrinfo *ai = w->run->ai;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            die("out of file descriptors after %ld connections (%s; RLIMIT_NOFILE is %llu)",
                (long)LD(w->connected) * w->run->nworkers, strerror(errno),
                (unsigned long long)rl.rlim_cur);
        }
        die("socket: %s", strerror(errno));
    }
    if (o->rcvbuf && c->role != ROLE_PUB) {
        int v = (int)o->rcvbuf;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    }
    if (c->role == ROLE_SLOW && o->slow_rate > 0) {
        /* A small receive buffer, so that the relay sees the slow reader soon. */
        int v = 64 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    }
    c->fd = fd;
    conn_set_state(c, CS_CONNECTING);
    w->connecting++;
    struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
    io_uring_prep_connect(sqe, fd, ai->ai_addr, ai->ai_addrlen);
    io_uring_sqe_set_data64(sqe, conn_ud(c, OP_CONNECT));
}

void conn_on_connect_cqe(struct conn *c, int res, uint64_t now)
{
    const struct flood_opts *o = c->w->o;
    long nworkers = c->w->run->nworkers;
    (void)now;
    if (res == -EISCONN)
        res = 0;
    if (res < 0) {
        if (c->role == ROLE_CHURN) {
            c->w->connecting--;
            ADD(c->w->churn_fail, 1);
            close(c->fd);
            c->fd = -1;
            conn_set_state(c, CS_IDLE);
            return;
        }
        if (res == -EADDRNOTAVAIL)
            die("cannot connect to %s:%d after %ld connections: %s (out of local ports?)", o->host,
                o->port, (long)LD(c->w->connected) * nworkers, strerror(-res));
        die("cannot connect to %s:%d: %s (after %ld connections)", o->host, o->port, strerror(-res),
            (long)LD(c->w->connected) * nworkers);
    }
    if (c->role == ROLE_CHURN) {
        c->w->connecting--;
        conn_set_state(c, CS_OPEN);
        ADD(c->w->churn_ops, 1);
        return;
    }
    on_connected(c);
}

static long connect_window(const struct worker *w)
{
    long wdw = CONNECT_WINDOW / w->run->nworkers;
    return wdw < 16 ? 16 : wdw;
}

void conn_connect_more(struct worker *w, uint64_t now)
{
    const struct flood_opts *o = w->o;
    while (w->connecting < connect_window(w)) {
        struct conn *c;
        if (w->next_sub < w->nsubs + w->nslows)
            c = w->next_sub < w->nsubs ? w->subs[w->next_sub] : w->slows[w->next_sub - w->nsubs];
        else if (w->phase >= PH_CONNECT_PUBS && w->next_pub < w->npubs)
            c = w->pubs[w->next_pub];
        else
            return;
        if (o->connect_rate > 0) {
            double rate = o->connect_rate / (double)w->run->nworkers;
            double allowed = (double)ns_since(now, w->connect_start) / 1e9 * rate + 1;
            if ((double)w->opened >= allowed)
                return;
        }
        if (c->role == ROLE_PUB)
            w->next_pub++;
        else
            w->next_sub++;
        w->opened++;
        conn_open(c);
    }
}
