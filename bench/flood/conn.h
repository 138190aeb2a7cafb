/* A client connection's life: opening (IORING_OP_CONNECT, at most a window at once and
 * --connect-rate per second), its state, its multishot recv in the mode it needs, and failure.
 * Runs on the owning worker's thread. */
#ifndef FLOOD_CONN_H
#define FLOOD_CONN_H

#include "run.h"

/** The user_data of a request for @c: the connection's address with the op in its low bits. */
static inline uint64_t conn_ud(const struct conn *c, enum op op)
{
    return (uint64_t)(uintptr_t)c | (uint64_t)op;
}

/** Sets the state, keeping the worker's count of live connections. */
void conn_set_state(struct conn *c, enum cstate s);

/** Closes the socket (ending the requests in flight on it) and marks it dead. */
void conn_kill(struct conn *c);

/** A connection failed: during set-up that ends flood (exit 1); afterwards it is counted in
 * `errors` and killed (a slow subscriber is only marked closed by the relay). */
void conn_failed(struct conn *c, const char *why);

/** conn_failed for a completion's result: 0 is "closed by the server", < 0 an errno. */
void conn_failed_res(struct conn *c, int res);

/** A blocking-style send of a short control message (SUBSCRIBE, CONNECT); dies when short.
 * Encrypted on a TLS connection. */
void conn_send_all(struct conn *c, const char *buf, size_t len, const char *what);

/** A best-effort non-blocking send of a short control message (a PONG), encrypted on a TLS
 * connection; nothing is reported when the socket does not take it. */
void conn_send_now(struct conn *c, const char *buf, size_t len);

/** Arms the multishot recv in the mode the connection is in now: copying into the parse
 * buffers, or MSG_TRUNC into the big group (byte counting with --read-mode trunc). Verified
 * subscribers get a multishot recvmsg instead (c->recv_msg), whose buffers also hold the read's
 * kernel receive timestamp: their completions go through sub_unpack first. */
void conn_recv_arm(struct conn *c);

/** Whether a subscriber should have a multishot recv armed now (lazy and slow ones do not). */
bool conn_wants_recv(const struct conn *c);

/** After a mode change: cancels the armed recv when it no longer fits; its last completion
 * re-arms it in the new mode (worker.c). */
void conn_recv_refresh(struct conn *c);

/** A NATS control line (kind: MSG_CTL_*) on @c: answers PINGs, completes a subscription on its
 * PONG, reports -ERR (fatal during set-up). */
void conn_nats_control(struct conn *c, size_t kind, const char *line, size_t len);

/** Opens a socket and submits its connect. */
void conn_open(struct conn *c);

/** The connect's completion. */
void conn_on_connect_cqe(struct conn *c, int res, uint64_t now);

/** The connection is up (the TCP connect done; with --tls, the handshake too: tls.c calls it):
 * counts it connected, sends what the protocol sends first (--auth's AUTH frame, SUBSCRIBE,
 * CONNECT) and arms its recv unless armed. */
void conn_session_start(struct conn *c);

/** Opens as many of the worker's connections as the window and --connect-rate allow:
 * subscribers (and slow ones) first, publishers once the controller says all are open. */
void conn_connect_more(struct worker *w, uint64_t now);

#endif
