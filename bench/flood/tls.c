/* flood's TLS: see tls.h. */
#include "tls.h"

#include "conn.h"
#include "pub.h"
#include "sub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define PLAIN_BUF (64 * 1024) /* plaintext handed on per call: several records, as one read */
#define INFO_MAX 4096         /* nats: the longest INFO line taken before the upgrade */

struct tls_client {
    SSL_CTX *ctx;
    const struct flood_opts *o;
    bool ip;                      /* the peer name is an address: verified as one, no SNI */
    const char *name;             /* --tls-servername, else --host */
    _Atomic(const char *) cipher; /* the first session's suite (static OpenSSL strings) */
};

struct tls_session {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool await_info;  /* nats: the server's INFO line comes first, in plain text */
    bool established;
    uint32_t info_len;
    /* publishers: the batch being sent */
    char *out;
    size_t out_cap, out_len, out_off;
    size_t plain_len; /* plaintext bytes that out carries */
};

/* OpenSSL's reason for the last error, the queue cleared. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    snprintf(buf, len, "unknown error");
    if (e)
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

struct tls_client *tls_client_new(const struct flood_opts *o)
{
    if (!o->tls)
        return NULL;
    struct tls_client *t = calloc(1, sizeof(*t));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!t || !ctx)
        die("cannot create a TLS context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Every connection does a full handshake: no session cache, nothing resumed. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (o->tls_insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        char why[256];
        FILE *f = fopen(o->tls_ca, "r");
        if (!f)
            die("--tls-ca %s: %s", o->tls_ca, strerror(errno));
        fclose(f);
        if (SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL) != 1)
            die("--tls-ca %s: %s", o->tls_ca, ssl_reason(why, sizeof(why)));
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    t->ctx = ctx;
    t->o = o;
    t->name = o->tls_servername ? o->tls_servername : o->host;
    unsigned char addr[16];
    t->ip = inet_pton(AF_INET, t->name, addr) == 1 || inet_pton(AF_INET6, t->name, addr) == 1;
    atomic_init(&t->cipher, NULL);
    return t;
}

void tls_client_free(struct tls_client *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

const char *tls_cipher(const struct tls_client *t)
{
    return t ? atomic_load_explicit(&t->cipher, memory_order_relaxed) : NULL;
}

/* Sends what OpenSSL has for the peer (handshake flights, alerts, short records) at once.
 * Returns false when the socket did not take all of it. */
static bool flush_now(struct conn *c)
{
    struct tls_session *s = c->tls;
    char buf[16384];
    int n;
    while ((n = BIO_read(s->wbio, buf, sizeof(buf))) > 0) {
        ssize_t k = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k != n)
            return false;
    }
    return true;
}

/* A session failed: the handshake (during set-up: flood exits 1) or a record. */
static void session_failed(struct conn *c, const char *what)
{
    char why[256], msg[400];
    long vr = SSL_get_verify_result(c->tls->ssl);
    if (!c->tls->established && vr != X509_V_OK) {
        ERR_clear_error();
        snprintf(msg, sizeof(msg), "%s: the server's certificate: %s", what,
                 X509_verify_cert_error_string(vr));
    } else {
        snprintf(msg, sizeof(msg), "%s: %s", what, ssl_reason(why, sizeof(why)));
    }
    conn_failed(c, msg);
}

static bool handshake_step(struct conn *c)
{
    struct tls_session *s = c->tls;
    int r = SSL_do_handshake(s->ssl);
    if (r != 1) {
        int e = SSL_get_error(s->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            session_failed(c, "TLS handshake failed");
            return false;
        }
    }
    if (!flush_now(c)) {
        conn_failed(c, "TLS handshake: the socket did not take a handshake message");
        return false;
    }
    if (r != 1)
        return false;
    s->established = true;
    struct tls_client *t = c->w->run->tls;
    if (!atomic_load_explicit(&t->cipher, memory_order_relaxed))
        atomic_store_explicit(&t->cipher, SSL_get_cipher_name(s->ssl), memory_order_relaxed);
    return true;
}

void tls_conn_start(struct conn *c)
{
    struct tls_client *t = c->w->run->tls;
    struct tls_session *s = calloc(1, sizeof(*s));
    if (!s || !(s->ssl = SSL_new(t->ctx)) || !(s->rbio = BIO_new(BIO_s_mem())) ||
        !(s->wbio = BIO_new(BIO_s_mem())))
        die("out of memory (TLS session)");
    /* An empty memory BIO means "retry", not end of file. */
    BIO_set_mem_eof_return(s->rbio, -1);
    BIO_set_mem_eof_return(s->wbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    SSL_set_connect_state(s->ssl);
    if (!t->o->tls_insecure) {
        int ok = t->ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), t->name)
                       : SSL_set1_host(s->ssl, t->name);
        if (ok != 1)
            die("--tls-servername %s: not usable as a name to verify", t->name);
    }
    if (!t->ip && SSL_set_tlsext_host_name(s->ssl, t->name) != 1)
        die("--tls-servername %s: not usable as a server name (SNI)", t->name);
    c->tls = s;
    s->await_info = t->o->proto == PROTO_NATS;
    conn_recv_arm(c);
    if (!s->await_info)
        handshake_step(c); /* the ClientHello */
}

void tls_conn_free(struct conn *c)
{
    struct tls_session *s = c->tls;
    if (!s)
        return;
    SSL_free(s->ssl);
    free(s->out);
    free(s);
    c->tls = NULL;
}

/* nats: takes the INFO line (plain text) from data. Returns the bytes it took; sets
 * s->await_info false once the line is whole. */
static size_t take_info(struct conn *c, const char *data, size_t n)
{
    struct tls_session *s = c->tls;
    const char *nl = memchr(data, '\n', n);
    size_t took = nl ? (size_t)(nl - data) + 1 : n;
    if (s->info_len == 0 && (n < 4 || memcmp(data, "INFO", 4) != 0)) {
        conn_failed(c, "expected the server's INFO before the TLS upgrade (is this nats?)");
        return n;
    }
    s->info_len += (uint32_t)took;
    if (s->info_len > INFO_MAX) {
        conn_failed(c, "INFO line too long before the TLS upgrade");
        return n;
    }
    if (nl)
        s->await_info = false;
    return took;
}

/* Plaintext to where a plain connection's bytes go. */
static void deliver(struct conn *c, const char *p, size_t n, uint64_t now)
{
    if (c->role == ROLE_PUB)
        pub_data(c, p, n);
    else
        sub_data(c, p, n, now);
}

static bool alive(const struct conn *c)
{
    return c->fd >= 0 && LD(c->state) != CS_DEAD;
}

void tls_recv(struct conn *c, const char *data, size_t n, uint64_t now)
{
    struct tls_session *s = c->tls;
    if (s->await_info) {
        size_t took = take_info(c, data, n);
        if (!alive(c) || s->await_info)
            return;
        data += took;
        n -= took;
        if (!handshake_step(c) && !alive(c))
            return;
    }
    /* ringcast's publishers are receivers too: what they get is dropped unread (plain mode
     * drops it with MSG_TRUNC), so once the session is up it is not even decrypted. */
    const struct flood_opts *o = c->w->o;
    if (s->established && c->role == ROLE_PUB &&
        (o->proto == PROTO_LINE || o->proto == PROTO_LEN32))
        return;
    if (n && BIO_write(s->rbio, data, (int)n) != (int)n)
        die("out of memory (TLS read buffer)");
    if (!s->established) {
        if (!handshake_step(c))
            return;
        conn_session_start(c);
        if (!alive(c))
            return;
    }
    /* Decrypt every whole record; a record cut by the recv waits in the read BIO. */
    char plain[PLAIN_BUF];
    size_t have = 0;
    for (;;) {
        size_t got = 0;
        if (SSL_read_ex(s->ssl, plain + have, sizeof(plain) - have, &got) == 1) {
            have += got;
            if (sizeof(plain) - have >= 16384)
                continue;
            deliver(c, plain, have, now);
            have = 0;
            if (!alive(c))
                return;
            continue;
        }
        int e = SSL_get_error(s->ssl, 0);
        if (have) {
            deliver(c, plain, have, now);
            have = 0;
            if (!alive(c))
                return;
        }
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            ERR_clear_error();
            conn_failed(c, "connection closed by the server (TLS close_notify)");
        } else {
            session_failed(c, "TLS record");
        }
        return;
    }
    /* Anything OpenSSL must answer (a key update) goes out now, unless a publisher's batch is
     * on its way: it then leads the next batch (tls_pub_submit takes all that is pending). */
    if (BIO_ctrl_pending(s->wbio) && !(c->pub && c->pub->inflight) && !flush_now(c))
        conn_failed(c, "TLS: the socket did not take a protocol message");
}

bool tls_send_now(struct conn *c, const char *buf, size_t len)
{
    size_t done = 0;
    if (SSL_write_ex(c->tls->ssl, buf, len, &done) != 1) {
        ERR_clear_error();
        return false;
    }
    return flush_now(c);
}

void tls_pub_submit(struct conn *c, const char *buf, size_t len)
{
    struct tls_session *s = c->tls;
    size_t done = 0;
    /* A memory BIO takes everything: one call encrypts the whole batch into records. */
    if (len && SSL_write_ex(s->ssl, buf, len, &done) != 1) {
        c->pub->inflight = false;
        session_failed(c, "TLS encryption");
        return;
    }
    size_t pending = BIO_ctrl_pending(s->wbio);
    if (pending > s->out_cap) {
        free(s->out);
        s->out_cap = pending + pending / 8;
        if (!(s->out = malloc(s->out_cap)))
            die("out of memory");
    }
    int n = pending ? BIO_read(s->wbio, s->out, (int)pending) : 0;
    s->out_len = n > 0 ? (size_t)n : 0;
    s->out_off = 0;
    s->plain_len = len;
    struct io_uring_sqe *sqe = ring_get_sqe(&c->w->ring);
    io_uring_prep_send(sqe, c->fd, s->out, s->out_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, conn_ud(c, OP_SEND));
}

int tls_pub_sent(struct conn *c, int res)
{
    struct tls_session *s = c->tls;
    if (res <= 0)
        return res == 0 ? -EPIPE : res;
    s->out_off += (size_t)res;
    if (s->out_off < s->out_len) {
        struct io_uring_sqe *sqe = ring_get_sqe(&c->w->ring);
        io_uring_prep_send(sqe, c->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, conn_ud(c, OP_SEND));
        return 0;
    }
    return (int)s->plain_len;
}
