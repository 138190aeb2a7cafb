/* flood's TLS (--tls): OpenSSL 3 client sessions on memory BIOs inside each worker's ring loop,
 * as the relay does its listeners (src/loop_tls.c): no blocking call, no extra thread.
 *
 * A connection's ciphertext arrives by the usual recv (worker.c, sub.c) and is fed to its SSL
 * here; the plaintext goes to sub_data() or pub_data() as a plain connection's bytes do. The
 * handshake runs after the TCP connect, while the connection still counts as connecting (so the
 * connect window bounds handshakes too); NATS first gets the server's INFO line in plain text,
 * then upgrades. Once the session is up, conn_session_start() sends what the protocol sends first
 * (AUTH, SUBSCRIBE, CONNECT...), encrypted. Publishers encrypt each batch whole and send the
 * ciphertext with one ring send at a time; the completion reports the plaintext bytes once all of
 * it is out. Short control messages (SUBSCRIBE, PONG, handshake flights) go out with a plain
 * non-blocking send(), like conn_send_all's.
 *
 * Runs on the owning worker's thread, except tls_client_new/free (set-up and teardown) and
 * tls_cipher (after the workers are joined). */
#ifndef FLOOD_TLS_H
#define FLOOD_TLS_H

#include "run.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_client;
struct tls_session;

/** The client context for @o (--tls-ca or --tls-insecure), or NULL without --tls. Exits 1 with
 * one message when the CA file cannot be loaded. Free with tls_client_free(). */
struct tls_client *tls_client_new(const struct flood_opts *o);

/** Frees the context (NULL is fine); the sessions made from it must be freed first. */
void tls_client_free(struct tls_client *t);

/** The cipher suite the first session negotiated ("TLS_AES_256_GCM_SHA384"), NULL before any or
 * without TLS. */
const char *tls_cipher(const struct tls_client *t);

/** After the TCP connect of @c: creates its session and starts the handshake (NATS: once the
 * server's INFO line has arrived), arming its recv. The session's end calls conn_session_start();
 * a failure goes through conn_failed(). */
void tls_conn_start(struct conn *c);

/** Frees @c's session (none is fine). */
void tls_conn_free(struct conn *c);

/** Ciphertext received on @c (a recv completion's bytes): drives the handshake, then hands the
 * plaintext to sub_data() or pub_data(). */
void tls_recv(struct conn *c, const char *data, size_t n, uint64_t now);

/** Encrypts @buf and sends the ciphertext at once with a non-blocking send (a short control
 * message). Returns false when the socket did not take all of it. Not for a publisher with a
 * send in flight. */
bool tls_send_now(struct conn *c, const char *buf, size_t len);

/** Publisher: encrypts @buf[0..len) (with anything OpenSSL still has to send) and submits the
 * ciphertext's send (OP_SEND). */
void tls_pub_submit(struct conn *c, const char *buf, size_t len);

/** Publisher: a send completion. Returns 0 when ciphertext is left and its send was submitted
 * (still in flight), -errno when the send failed or the connection closed, else the plaintext
 * bytes of the batch, now all written. */
int tls_pub_sent(struct conn *c, int res);

#endif
