/*
 * New connections: one multishot accept per listener (listen.c), --max-clients and
 * --max-clients-per-ip across all of them, and descriptor exhaustion (EMFILE).
 */
#include "loop_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringcast/proxy.h"
#include "say.h"

#define CLIENT_SNDBUF (512 << 10)

rlim_t accept_fd_limit_now(void)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0;
}

/* An accept's user_data names its listener in the slot field (no generation: listeners are not
 * reused). */
static uint64_t accept_ud(uint32_t index)
{
    return ud_pack(OP_ACCEPT, 0, index);
}

void accept_arm(struct loop *l)
{
    /* The kernel reads RLIMIT_NOFILE when an accept is prepared: remember which one it got. */
    rlim_t fd_limit = accept_fd_limit_now();
    l->accept_idle = false;
    for (uint32_t i = 0; i < l->nlisteners; i++) {
        struct listener *ls = &l->listeners[i];
        if (ls->armed || ls->fd < 0)
            continue;
        ls->fd_limit = fd_limit;
        struct io_uring_sqe *sqe = ring_get_sqe(&l->ring);
        io_uring_sqe_set_data64(sqe, accept_ud(i));
        if (l->feat.multishot_accept)
            io_uring_prep_multishot_accept(sqe, ls->fd, NULL, NULL, SOCK_CLOEXEC);
        else
            io_uring_prep_accept(sqe, ls->fd, NULL, NULL, SOCK_CLOEXEC);
        ls->armed = true;
    }
}

static void cancel_one(struct loop *l, uint32_t index)
{
    struct io_uring_sqe *sqe = loop_sqe(l, OP_IGNORE, NULL);
    io_uring_prep_cancel64(sqe, accept_ud(index), 0);
}

void accept_cancel(struct loop *l)
{
    for (uint32_t i = 0; i < l->nlisteners; i++)
        if (l->listeners[i].armed)
            cancel_one(l, i);
}

void accept_fd_limit_changed(struct loop *l, rlim_t fd_limit)
{
    for (uint32_t i = 0; i < l->nlisteners; i++) {
        struct listener *ls = &l->listeners[i];
        if (ls->armed && ls->fd_limit != fd_limit) {
            ls->fd_limit = fd_limit; /* cancelled once; armed again after the batch */
            cancel_one(l, i);
        }
    }
}

int accept_setup(struct loop *l, char *err, size_t errlen)
{
    if (!l->o->max_clients_per_ip)
        return 0;
    /* A secret hash key: peers cannot pick addresses that pile up in one probe chain. */
    uint8_t key[16];
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        int e = errno;
        snprintf(err, errlen, "getrandom: %s", strerror(e));
        return -e;
    }
    /* Sized for every slot: a counted connection keeps its slot until accept_forget, so the
     * table holds at most one address per slot and is never full. */
    if (peercount_init(&l->peers, l->conns.cap, key) < 0) {
        snprintf(err, errlen, "out of memory for --max-clients-per-ip (%u addresses)",
                 l->conns.cap);
        return -ENOMEM;
    }
    return 0;
}

void accept_forget(struct loop *l, struct conn *c)
{
    struct peercount_key key;
    if (!c->peer_counted || !peercount_key_of(&c->peer, &key))
        return;
    peercount_remove(&l->peers, &key);
    c->peer_counted = false;
}

/* An address without its port, as a log line names a peer refused for its address. */
static const char *addr_only(const union netaddr *a, char *buf, size_t len)
{
    const void *src = NULL;
    int af = a->sa.sa_family;
    if (af == AF_INET) {
        src = &a->v4.sin_addr;
    } else if (af == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->v6.sin6_addr)) {
        af = AF_INET;
        src = &a->v6.sin6_addr.s6_addr[12];
    } else if (af == AF_INET6) {
        src = &a->v6.sin6_addr;
    }
    if (!src || !inet_ntop(af, src, buf, (socklen_t)len))
        snprintf(buf, len, "?");
    return buf;
}

/* Refusals are counted at once but logged at most once a second, in one line for both limits. */
void accept_log_rejects(struct loop *l, bool force)
{
    uint64_t max = l->rejects_unlogged, per_ip = l->rejects_per_ip_unlogged;
    if (!(max + per_ip) || (!force && l->now_ns - l->last_reject_log_ns < NSEC))
        return;
    char both[64] = "", ip[128] = "", addr[INET6_ADDRSTRLEN + 1];
    if (max && per_ip)
        snprintf(both, sizeof(both), "--max-clients (%u) reached; %llu more: ", l->conns.cap,
                 (unsigned long long)per_ip);
    if (per_ip)
        snprintf(ip, sizeof(ip), "--max-clients-per-ip (%u) reached, the last from %s",
                 l->o->max_clients_per_ip, addr_only(&l->last_per_ip_reject, addr, sizeof(addr)));
    if (per_ip)
        say_warn("closed %llu new connection(s): %s%s", (unsigned long long)(max ? max : per_ip),
                 both, ip);
    else
        say_warn("closed %llu new connection(s): --max-clients (%u) reached",
                 (unsigned long long)max, l->conns.cap);
    l->rejects_unlogged = l->rejects_per_ip_unlogged = 0;
    l->last_reject_log_ns = l->now_ns;
}

static void reject(struct loop *l, int fd, uint64_t *total, uint64_t *unlogged)
{
    close(fd);
    (*total)++;
    (*unlogged)++;
    accept_log_rejects(l, false);
}

/*
 * The one place a connection's peer address is learned; the per-address count and the log use
 * what it says. (A PROXY protocol header would replace it once read: the count would then move
 * with accept_forget and peercount_add.)
 */
static void accept_peer(int fd, union netaddr *peer)
{
    socklen_t alen = sizeof(*peer);
    if (getpeername(fd, &peer->sa, &alen) < 0)
        peer->sa.sa_family = AF_UNSPEC; /* reset already: unknown, and not counted */
}

static void new_conn(struct loop *l, uint32_t index, int fd)
{
    if (l->draining) {
        close(fd);
        return;
    }
    union netaddr peer;
    accept_peer(fd, &peer);
    struct peercount_key key;
    uint32_t per_ip = l->o->max_clients_per_ip;
    /* Behind a proxy the socket's address is the proxy's: the header's is counted, once read. */
    bool count = per_ip && !l->listeners[index].proxy && peercount_key_of(&peer, &key);
    /* Before a slot is taken: a refused connection is never registered, so it gets no frame and
     * is nobody's receiver. */
    if (count && peercount_get(&l->peers, &key) >= per_ip) {
        l->last_per_ip_reject = peer;
        reject(l, fd, &l->stats.rejected_per_ip, &l->rejects_per_ip_unlogged);
        return;
    }
    struct listener *ls = &l->listeners[index];
    if (!tls_accept_allowed(l, ls)) { /* before a slot: nothing is held for it */
        close(fd);
        return;
    }
    struct conn *c = conn_table_alloc(&l->conns, fd);
    if (!c) {
        reject(l, fd, &l->stats.rejected_max_clients, &l->rejects_unlogged);
        return;
    }
    if (tls_conn_open(l, c, ls) < 0) {
        /* No memory for its TLS state. Nothing refers to the slot yet: give it back now. */
        say_warn("out of memory for a TLS connection: closed");
        close(fd);
        conn_table_free(&l->conns, c);
        return;
    }
    c->peer = peer;
    /* Its listener's role: the engine enforces it from here on (loop_conn_open); a client
     * certificate or a token may narrow it. */
    c->listener = (uint8_t)index;
    c->role = ls->role & 3u;
    auth_conn_open(l, c, ls);
    ls->accepted++;
    /* Cannot fail (see accept_setup); if it did, the connection would just go uncounted. */
    c->peer_counted = count && peercount_add(&l->peers, &key) > 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    /* A fixed send buffer (the kernel doubles it: 1 MiB) instead of autotuning up to
     * tcp_wmem's 4 MiB: readers that read at the same rate then stay within a few MiB of each
     * other in the log, well inside one --max-queue, however differently their buffers would
     * have grown; and the kernel memory a stopped reader holds is bounded too. */
    int sndbuf = CLIENT_SNDBUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    l->stats.accepted++;
    c->proxy_pending = ls->proxy;
    char addr[NETADDR_STRLEN];
    if (!c->proxy_pending) /* else once its header says who it is */
        say_event("%s connected.", netaddr_format(&c->peer, addr, sizeof(addr)));
    loop_conn_open(l, c);
}

/* ===== the PROXY protocol header (proxy listeners) ===== */

static void proxy_fail(struct loop *l, struct conn *c, const char *why)
{
    gate_release(c);
    c->close_note = why;
    loop_stop_reading(l, c);
    loop_doom(l, c, DISC_PROXY_FAILED);
}

void accept_proxy_timeout(struct loop *l, struct conn *c)
{
    l->stats.proxy_timeout++;
    proxy_fail(l, c, NULL); /* the close line says "timeout" */
}

/* The header's address stands for the client from now on: in the log, in the per-address count
 * and its limit (which may refuse it now), in metrics. */
static bool take_address(struct loop *l, struct conn *c, const struct proxy_header *h)
{
    if (!h->local)
        c->peer = h->src;
    struct peercount_key key;
    uint32_t per_ip = l->o->max_clients_per_ip;
    if (per_ip && peercount_key_of(&c->peer, &key)) {
        if (peercount_get(&l->peers, &key) >= per_ip) {
            /* Refused as if at accept: counted and logged as a refusal, not as a client. */
            l->last_per_ip_reject = c->peer;
            l->stats.rejected_per_ip++;
            l->rejects_per_ip_unlogged++;
            accept_log_rejects(l, false);
            c->quiet_close = true;
            loop_stop_reading(l, c);
            loop_doom(l, c, DISC_EOF);
            return false;
        }
        c->peer_counted = peercount_add(&l->peers, &key) > 0;
    }
    char addr[NETADDR_STRLEN];
    say_event("%s connected.", netaddr_format(&c->peer, addr, sizeof(addr)));
    return true;
}

size_t accept_proxy_gate(struct loop *l, struct conn *c, const uint8_t *p, size_t len)
{
    struct gate_view v = gate_view(c, p, len, PROXY_HEADER_MAX);
    struct proxy_header h;
    enum proxy_result r = proxy_parse(v.bytes, v.have, &h);
    if (r == PROXY_NEED_MORE && v.have >= PROXY_HEADER_MAX)
        r = PROXY_INVALID; /* cannot happen (the parser decides by then): stay bounded */
    if (r == PROXY_NEED_MORE) {
        gate_hold(l, c, &v, PROXY_HEADER_MAX);
        return len;
    }
    if (r == PROXY_INVALID) {
        l->stats.proxy_invalid++;
        const char *why = proxy_reason(v.bytes, v.have);
        proxy_fail(l, c, why ? why : "invalid");
        return len;
    }
    size_t used = h.len - v.before;
    gate_release(c);
    c->proxy_pending = false;
    if (take_address(l, c, &h))
        loop_gate_passed(l, c);
    return used;
}

/*
 * Out of descriptors: shed the connections waiting on the listener that said so with the spare
 * fd, then pause accepting on it. The pause (accept_resume_ns) holds for every listener whose
 * accept ends meanwhile: each that meets the limit sheds its own waiting connections the same way.
 */
static void accept_emfile(struct loop *l, uint32_t index, int err)
{
    struct listener *ls = &l->listeners[index];
    /* The kernel checked the limit the accept was armed with: if it has been raised since,
     * this error is stale and the connection waiting is welcome. Just arm again. */
    if (err == -EMFILE && accept_fd_limit_now() > ls->fd_limit)
        return;
    if (l->spare_fd >= 0 && ls->fd >= 0) {
        close(l->spare_fd);
        l->spare_fd = -1;
        int fl = fcntl(ls->fd, F_GETFL);
        fcntl(ls->fd, F_SETFL, fl | O_NONBLOCK);
        /* Shed what waits now (bounded), so those peers hear a close instead of hanging. */
        for (int i = 0; i < 64; i++) {
            int fd = accept4(ls->fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                break;
            close(fd);
            l->stats.rejected_emfile++;
        }
        fcntl(ls->fd, F_SETFL, fl);
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (l->now_ns - l->last_reject_log_ns >= NSEC) {
        say_warn("accept: %s; shedding new connections for now", strerror(-err));
        l->last_reject_log_ns = l->now_ns;
    }
    l->accept_resume_ns = l->now_ns + ACCEPT_BACKOFF_NS;
    if (ls->armed)
        cancel_one(l, index);
}

void accept_on_cqe(struct loop *l, uint32_t index, int res, unsigned flags)
{
    if (unlikely(index >= l->nlisteners)) { /* cannot happen: only accept_arm makes these */
        if (res >= 0)
            close(res);
        return;
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        l->listeners[index].armed = false;
        l->accept_idle = true;
    }
    if (likely(res >= 0))
        new_conn(l, index, res);
    else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM)
        accept_emfile(l, index, res);
    /* Other errors (ECONNABORTED, ECANCELED...) concern one connection: accepting goes on. */
}
