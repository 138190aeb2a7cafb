/*
 * Client connections: a table of slots preallocated to --max-clients, with a free list and a
 * generation per slot so a completion for a closed connection is recognised (nginx's instance
 * bit, widened). Closing is a state: the slot is freed only after its last completion, and only
 * at the end of a completion batch, so nothing later in the batch can see it reused.
 */
#ifndef RINGCAST_CONN_H
#define RINGCAST_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/fanout.h"
#include "ringcast/ingest.h"
#include "ringcast/netaddr.h"
#include "ringcast/recvctl.h"
#include "tls.h"
#include "userdata.h" /* UD_GEN_MASK: the generation travels in user_data */

#define CONN_NONE UINT32_MAX

enum conn_state { CONN_FREE, CONN_OPEN, CONN_CLOSING };

/* Where a connection is with AUTH (loop_auth.c): nothing to do (not asked, or done), its first
 * frame awaited, or failed and waiting for its close. */
enum conn_auth { CONN_AUTH_NONE, CONN_AUTH_PENDING, CONN_AUTH_FAILED };

struct conn {
    /* read-only for the loop after conn_table_alloc */
    int fd;
    uint32_t slot;
    uint32_t gen;
    /* private to the loop */
    uint8_t state;             /* enum conn_state */
    uint8_t reason;            /* enum disconnect_reason, once doomed */
    bool doomed : 1;           /* a verdict closes it at the end of the batch */
    bool paused : 1;           /* flow control: not read, in the loop's paused FIFO */
    bool poll_armed : 1;       /* waiting for POLLOUT */
    bool fd_closed : 1;        /* fd reset early while zero-copy notifications drain */
    bool drained : 1;          /* shutting down: all output handed over, FIN sent */
    bool in_rearm : 1;         /* in the loop's list of recvs to arm after the batch */
    bool in_reap : 1;          /* in the loop's list of slots to free after the batch */
    bool eof : 1;              /* its peer closed while paused: close once its bytes are in */
    bool pack_exempt : 1;      /* dropped by the slow policy: not in the pack until it catches up */
    bool peer_counted : 1;     /* counted for --max-clients-per-ip under peer (accept.c) */
    bool proxy_pending : 1;    /* a proxy listener's client: its PROXY header comes first */
    bool quiet_close : 1;      /* closed without a log line (refused after its PROXY header) */
    uint8_t role : 2;          /* enum listen_role: its listener's, then met with its token's */
    uint8_t auth : 2;          /* enum conn_auth */
    uint8_t fail_detail;       /* enum auth_failure or tls_failure: what its close line says */
    uint16_t token;            /* the token it authenticated with (AUTH_TOKEN_NONE: none) */
    uint16_t gate_len;         /* bytes of a split PROXY header or AUTH frame in gate_buf */
    uint8_t *gate_buf;         /* one, assembled (PROXY_HEADER_MAX or AUTH_FRAME_MAX); or NULL */
    uint64_t deadline_ns;      /* gates pending (PROXY, TLS, AUTH): the deadline from accept;
                                  AUTH failed: when it is closed */
    struct tls_conn *tls;      /* a TLS listener's client (loop_tls.c); else NULL */
    const char *close_note;    /* a static detail for its close line (a PROXY header's fault) */
    struct recvctl rx;         /* the multishot recv */
    uint8_t listener;          /* index in the loop's listeners (0: the default one) */
    uint32_t active_idx;       /* position in the table's dense active array */
    uint32_t next_paused;      /* paused FIFO link */
    uint32_t next_doomed;      /* doomed list link */
    uint32_t next_rearm;       /* re-arm list link */
    uint32_t next_reap;        /* reap list link */
    uint64_t partial_since_ns; /* when its incomplete frame started; 0: none */
    struct ingest_client in;
    struct fanout_client out;
    union netaddr peer; /* set once, at accept (accept_peer); the per-address count's key */
};

struct conn_table {
    struct conn *slots;
    uint32_t cap;
    uint32_t *free_stack;
    uint32_t free_top;
    uint32_t *active; /* slots in use, dense, for the per-batch flush */
    uint32_t nactive;
};

/** Preallocate @cap slots (memory is touched only as slots are used). 0 or -ENOMEM. */
int conn_table_init(struct conn_table *t, uint32_t cap);
void conn_table_destroy(struct conn_table *t);

/** A zeroed OPEN connection for @fd, or NULL when all slots are taken. */
struct conn *conn_table_alloc(struct conn_table *t, int fd);

/** Return @c's slot; its generation moves on so late completions are recognised. */
void conn_table_free(struct conn_table *t, struct conn *c);

/** The connection a completion refers to, or NULL if that slot has moved on since. */
static inline struct conn *conn_table_lookup(struct conn_table *t, uint32_t slot, uint32_t gen)
{
    if (slot >= t->cap)
        return NULL;
    struct conn *c = &t->slots[slot];
    return c->state != CONN_FREE && c->gen == gen ? c : NULL;
}

#endif
