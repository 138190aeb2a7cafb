/*
 * TLS for listeners flagged `tls`: OpenSSL 3 on memory BIOs. This module never touches a socket:
 * the loop hands it the bytes a multishot recv brought (tls_conn_feed) and takes the bytes to
 * send from it (tls_conn_take_out), so handshakes and records go through the ring like any other
 * bytes, with no blocking call, no second event loop and no thread. loop_tls.c does that wiring.
 *
 * The context: TLS 1.2 or newer, OpenSSL's default ciphers, no renegotiation, no compression,
 * buffers released while a connection is idle; with a client CA, client certificates are required
 * and verified. It is built whole from the files at start and on SIGHUP, and swapped only when the
 * new one is complete (connections keep the context they started with: OpenSSL counts references).
 *
 * kTLS (the kernel encrypting records after the handshake) is probed and reported, not used: see
 * docs/ARCHITECTURE.md for where it would go.
 */
#ifndef RINGCAST_TLS_H
#define RINGCAST_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/opts.h"
#include "ringcast/stats.h" /* enum tls_failure */

struct ssl_ctx_st;
struct ssl_st;
struct bio_st;
struct bio_method_st;

struct tls_ctx {
    struct ssl_ctx_st *ctx;
    struct bio_method_st *out_method; /* the write BIO's: records straight into tls_conn.next */
    int64_t not_after;                /* the certificate's expiry, seconds since the epoch */
    bool verify_clients;              /* --tls-client-ca: client certificates required */
};

/* One connection's TLS state. */
struct tls_conn {
    struct ssl_st *ssl;
    struct bio_st *rbio, *wbio; /* in: ciphertext from the socket; out: ciphertext to send */
    uint8_t *out;               /* ciphertext being sent (NULL: none) */
    uint32_t out_len, out_off;
    uint8_t *next; /* records OpenSSL wrote since (the write BIO appends here), sent after out */
    uint32_t next_len, next_cap;
    bool established : 1; /* handshake done */
    bool sending : 1;     /* a send of out[out_off..out_len) is in the kernel's hands */
    bool closing : 1;     /* close_notify queued (the drain) */
};

/**
 * Build a context from @o's --tls-cert, --tls-key and --tls-client-ca. 0, or -1 with @err set
 * (OpenSSL's reason, never key material).
 */
int tls_ctx_load(struct tls_ctx *t, const struct opts *o, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *t);
/** tls_ctx_free, and what lives as long as the loop (once no connection is left). */
void tls_ctx_destroy(struct tls_ctx *t);

/** One line on what kTLS would need and what is there (kernel ULP, OpenSSL), for the log. */
void tls_ktls_probe(char *out, size_t len);

/** A server-side connection in @t. 0 or -ENOMEM. */
int tls_conn_init(struct tls_conn *c, const struct tls_ctx *t);
/** Free everything (the caller made sure no send points into out any more). */
void tls_conn_free(struct tls_conn *c);

enum tls_step {
    TLS_STEP_MORE,   /* nothing more to do until more bytes arrive */
    TLS_STEP_DONE,   /* the handshake completed now */
    TLS_STEP_CLOSED, /* the peer sent close_notify */
    TLS_STEP_FAILED, /* see *why */
};

/**
 * Ciphertext @p[0..@len) arrived. Before the handshake is done, it moves the handshake on and
 * returns DONE as soon as it completes (call again with no bytes to decrypt what came with it).
 * Once done, it decrypts: @plain is called with each piece of plaintext (it may
 * return false to stop: the rest stays in OpenSSL's buffers for the next call). Any ciphertext to
 * send (handshake messages, alerts) waits in the write BIO for tls_conn_take_out.
 */
enum tls_step tls_conn_feed(struct tls_conn *c, const uint8_t *p, size_t len,
                            bool (*plain)(void *ctx, const uint8_t *p, size_t len), void *ctx,
                            enum tls_failure *why);

/** Encrypt @p[0..@len) (application data) into the write BIO. 0 or -1 (a fatal TLS error or
 * no memory). */
int tls_conn_encrypt(struct tls_conn *c, const void *p, size_t len);

/** Queue close_notify into the write BIO (once). */
void tls_conn_close_notify(struct tls_conn *c);

/**
 * The ciphertext to send now: what is left of c->out, else what the write BIO gathered (it
 * becomes c->out), unless a send of c->out is in flight. Returns its length (0: none).
 */
int64_t tls_conn_take_out(struct tls_conn *c);

/** The OU of the client's certificate as a role: 0 none (no OU, or another), else 1 + role. */
int tls_conn_peer_role(const struct tls_conn *c);

/** "TLSv1.3" and the like, for the log. */
const char *tls_conn_version(const struct tls_conn *c);

/** What the log says after "tls: " for @f. */
const char *tls_failure_text(enum tls_failure f);

#endif
