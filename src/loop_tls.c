/*
 * TLS clients on the ring (listeners flagged `tls`; tls.c holds OpenSSL). Their ciphertext
 * arrives by the usual multishot recv and is fed to OpenSSL; the plaintext goes through the same
 * gates and ingest as a plain client's bytes. Their output is planned by fanout like anyone's,
 * then encrypted, at most TLS_CHUNK of plaintext at a time, into a ciphertext buffer of the
 * client's own that is sent with ordinary sends (one in flight, POLLOUT when the socket is full).
 * The cursor moves when bytes are encrypted, so the log pins nothing for a TLS client's send; the
 * ciphertext not yet sent is charged to its quota instead (fanout's held_out). A handshake must
 * be done within --auth-timeout of accept, and at most --max-tls-handshakes run at once.
 */
#include "loop_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "ringcast/alloc.h"
#include "say.h"

/* Plaintext encrypted per send: big enough that records and sends are few, small enough that the
 * buffer a client holds stays modest (it is charged to the client's quota). */
#define TLS_CHUNK (256u << 10)

static bool any_tls_listener(const struct opts *o)
{
    for (unsigned i = 0; i < o->nlisten; i++)
        if (o->listen[i].tls)
            return true;
    return false;
}

int tls_setup(struct loop *l, char *err, size_t errlen)
{
    if (!any_tls_listener(l->o))
        return 0;
    if (tls_ctx_load(&l->tls, l->o, err, errlen) < 0)
        return -EINVAL;
    l->tls_on = true;
    return 0;
}

void tls_destroy(struct loop *l)
{
    tls_ctx_destroy(&l->tls);
}

bool tls_accept_allowed(struct loop *l, const struct listener *ls)
{
    if (!ls->tls || l->tls_handshaking < l->o->max_tls_handshakes)
        return true;
    l->stats.tls_failures[TLSF_BUSY]++;
    if (l->now_ns >= l->tls_busy_logged_ns + NSEC) {
        say_warn("%u TLS handshakes in progress (--max-tls-handshakes): closing new TLS "
                 "connections at once",
                 l->tls_handshaking);
        l->tls_busy_logged_ns = l->now_ns;
    }
    return false;
}

int tls_conn_open(struct loop *l, struct conn *c, const struct listener *ls)
{
    if (!ls->tls)
        return 0;
    c->tls = rc_malloc(sizeof(*c->tls));
    if (!c->tls || tls_conn_init(c->tls, &l->tls) < 0) {
        rc_free(c->tls);
        c->tls = NULL;
        return -ENOMEM;
    }
    l->tls_handshaking++;
    return 0;
}

void tls_conn_release(struct loop *l, struct conn *c)
{
    if (!c->tls)
        return;
    if (!c->tls->established)
        l->tls_handshaking--;
    tls_conn_free(c->tls);
    rc_free(c->tls);
    c->tls = NULL;
}

/* Hand the ciphertext waiting in OpenSSL to the socket, unless a send of it is out already. */
static void send_out(struct loop *l, struct conn *c)
{
    struct tls_conn *t = c->tls;
    int64_t n = tls_conn_take_out(t);
    if (n < 0) {
        loop_doom(l, c, DISC_NO_MEMORY);
        return;
    }
    c->out.held_out = (t->out ? t->out_len - t->out_off : 0) + t->next_len;
    if (n == 0)
        return;
    struct io_uring_sqe *sqe = loop_sqe(l, OP_SEND, c);
    io_uring_prep_send(sqe, c->fd, t->out + t->out_off, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    t->sending = true;
}

/* The handshake failed: an alert if one is ready and the socket takes it at once, then close. */
static void fail(struct loop *l, struct conn *c, enum tls_failure why)
{
    if (!conn_live(c))
        return;
    l->stats.tls_failures[why]++;
    struct tls_conn *t = c->tls;
    if (!t->sending && !c->poll_armed && tls_conn_take_out(t) > 0)
        (void)!send(c->fd, t->out + t->out_off, t->out_len - t->out_off,
                    MSG_DONTWAIT | MSG_NOSIGNAL);
    c->fail_detail = (uint8_t)why;
    loop_stop_reading(l, c);
    loop_doom(l, c, DISC_TLS_FAILED);
}

void tls_timeout(struct loop *l, struct conn *c)
{
    fail(l, c, TLSF_TIMEOUT);
}

/* The handshake is done: the certificate's OU may narrow the role, then the next gate. */
static bool established(struct loop *l, struct conn *c)
{
    l->tls_handshaking--;
    l->stats.tls_handshakes++;
    int cert_role = tls_conn_peer_role(c->tls);
    if (cert_role) {
        int role = auth_role_meet((enum listen_role)(cert_role - 1), (enum listen_role)c->role);
        if (role < 0) {
            fail(l, c, TLSF_ROLE);
            return false;
        }
        c->role = (unsigned)role & 3u;
    }
    if (say_verbosity() == VERB_VERBOSE) {
        char addr[NETADDR_STRLEN];
        say_event("%s TLS established (%s, role %s).", netaddr_format(&c->peer, addr, sizeof(addr)),
                  tls_conn_version(c->tls), opts_role_name((enum listen_role)c->role));
    }
    loop_gate_passed(l, c);
    return true;
}

struct plain_ctx {
    struct loop *l;
    struct conn *c;
};

/* Decrypted bytes go where a plain client's bytes go; stop once the client is on its way out. */
static bool on_plain(void *ctx, const uint8_t *p, size_t len)
{
    struct plain_ctx *pc = ctx;
    loop_conn_input(pc->l, pc->c, p, len);
    return conn_live(pc->c) && pc->c->auth != CONN_AUTH_FAILED;
}

void tls_on_recv(struct loop *l, struct conn *c, const uint8_t *p, size_t len)
{
    struct plain_ctx pc = {l, c};
    enum tls_failure why = TLSF_PROTOCOL;
    enum tls_step step = tls_conn_feed(c->tls, p, len, on_plain, &pc, &why);
    if (step == TLS_STEP_DONE && established(l, c))
        step = tls_conn_feed(c->tls, NULL, 0, on_plain, &pc, &why);
    if (step == TLS_STEP_FAILED && conn_live(c)) {
        if (c->tls->established) /* a bad record after the handshake: a broken connection */
            loop_doom(l, c, DISC_RESET);
        else
            fail(l, c, why);
        return;
    }
    if (step == TLS_STEP_CLOSED && conn_live(c) && !c->paused && !ingest_waiting(&c->in))
        loop_doom(l, c, DISC_EOF);
    /* Handshake messages, alerts, session tickets: out as soon as the socket allows. */
    if (conn_live(c) && !c->tls->sending && !c->poll_armed)
        send_out(l, c);
}

void tls_try_send(struct loop *l, struct conn *c)
{
    struct tls_conn *t = c->tls;
    if (t->sending)
        return;
    if (tls_conn_take_out(t) != 0 || !t->established) { /* what waits goes first */
        send_out(l, c);
        return;
    }
    struct fanout_send s;
    bool zc;
    uint64_t vbefore = c->out.vcursor;
    bool planned = fanout_plan(&l->fanout, &c->out, c->slot, false, 0, &s, &zc);
    if (c->out.vcursor != vbefore && !c->out.finishing)
        flow_advance(&l->flow, c->slot, c->out.vcursor);
    if (!planned) {
        if (c->out.finishing) {
            loop_judge(l, c);
        } else if (unlikely(l->draining)) {
            if (!t->closing) { /* close_notify, then FIN once it is out */
                tls_conn_close_notify(t);
                send_out(l, c);
            }
            if (!t->sending)
                lifecycle_drain_done(l, c);
        }
        return;
    }
    /* Encrypt the plan's first TLS_CHUNK bytes; the rest is planned again after this send. */
    size_t took = 0;
    for (unsigned i = 0; i < s.niov && took < TLS_CHUNK; i++) {
        size_t n = s.iov[i].iov_len < TLS_CHUNK - took ? s.iov[i].iov_len : TLS_CHUNK - took;
        if (tls_conn_encrypt(t, s.iov[i].iov_base, n) < 0) {
            fanout_sent(&l->fanout, &c->out, -EIO);
            loop_doom(l, c, DISC_RESET);
            return;
        }
        took += n;
    }
    enum fanout_sent r = fanout_sent(&l->fanout, &c->out, (int)took);
    if (!c->out.finishing)
        flow_advance(&l->flow, c->slot, c->out.vcursor);
    send_out(l, c);
    /* Encrypting less than the plan is not a full socket: the quota is checked, nothing waits. */
    if (r != FANOUT_SENT_ALL && conn_live(c))
        loop_judge(l, c);
}

void tls_on_send(struct loop *l, struct conn *c, int res)
{
    struct tls_conn *t = c->tls;
    t->sending = false;
    if (c->state != CONN_OPEN || !conn_live(c)) {
        loop_maybe_finish_close(l, c);
        return;
    }
    if (res < 0 && res != -EAGAIN) {
        loop_doom(l, c, DISC_RESET);
        return;
    }
    if (res > 0)
        t->out_off += (uint32_t)res;
    c->out.held_out = t->out_len - t->out_off + t->next_len;
    if (t->out_off < t->out_len) {
        /* The socket is full: wait for room, and judge the quota meanwhile. */
        loop_arm_poll(l, c);
        loop_judge(l, c);
        return;
    }
    loop_try_send(l, c);
}

void tls_reload(struct loop *l)
{
    char err[300];
    if (tls_ctx_load(&l->tls, l->o, err, sizeof(err)) < 0) {
        l->stats.tls_reload_failures++;
        say_error("SIGHUP: TLS certificate not reloaded: %s; keeping the previous one", err);
        return;
    }
    l->stats.tls_reloads++;
    char when[32] = "?";
    time_t t = (time_t)l->tls.not_after;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    say_event("SIGHUP: TLS certificate reloaded (expires %s); new handshakes use it", when);
}
