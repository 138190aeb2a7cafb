/* Counters of one event loop. Plain numbers; the --stats-interval line and (later) the metrics
 * endpoint read the same ones. */
#ifndef RINGCAST_STATS_H
#define RINGCAST_STATS_H

#include <stdint.h>

enum disconnect_reason {
    DISC_EOF,
    DISC_RESET,
    DISC_SLOW_CONSUMER,
    DISC_FRAME_TOO_LONG,
    DISC_PARTIAL_TIMEOUT,
    DISC_PARTIAL_MEMORY,
    DISC_NO_MEMORY,
    DISC_SHUTDOWN,
    DISC_PROTOCOL_VIOLATION, /* see enum violation */
    DISC_AUTH_FAILED,        /* see enum auth_failure */
    DISC_TOKEN_REVOKED,      /* its token left the auth file (SIGHUP) */
    DISC_TLS_FAILED,         /* see enum tls_failure */
    DISC_PROXY_FAILED,       /* no valid PROXY header in time on a proxy listener */
    DISC__COUNT,
};

/* Protocol violations: what a client did that its listener does not allow (it is disconnected). */
enum violation {
    VIOL_SUB_SENT, /* sent data on a sub-only listener */
    VIOL__COUNT,
};

/* Why a client's AUTH failed (it is disconnected). */
enum auth_failure {
    AUTHF_MISSING,   /* its first frame was not AUTH */
    AUTHF_MALFORMED, /* too long, no token, or a byte outside printable ASCII in it */
    AUTHF_BAD_TOKEN, /* no such token */
    AUTHF_ROLE,      /* its token's role and its listener's do not meet */
    AUTHF_TIMEOUT,   /* no complete AUTH frame within --auth-timeout of accept */
    AUTHF__COUNT,
};

/* Why a TLS handshake failed (the client is disconnected). */
enum tls_failure {
    TLSF_PROTOCOL,    /* not TLS, an unsupported version, a bad record, an alert */
    TLSF_TIMEOUT,     /* not done within --auth-timeout of accept */
    TLSF_BUSY,        /* --max-tls-handshakes were in progress: closed at accept */
    TLSF_CLIENT_CERT, /* no client certificate, or one that does not verify */
    TLSF_ROLE,        /* the certificate's OU and the listener's role do not meet */
    TLSF__COUNT,
};

#define STATS_BATCH_BUCKETS 17 /* up to 2^16 frames per send, then +Inf */

struct stats {
    uint64_t accepted;
    uint64_t rejected_max_clients;
    uint64_t rejected_per_ip; /* --max-clients-per-ip */
    uint64_t rejected_emfile;
    uint64_t frames_in;
    uint64_t bytes_in;
    uint64_t deliveries;     /* frames whose last byte a receiver's socket took */
    uint64_t bytes_out;      /* bytes the kernel took */
    uint64_t frames_dropped; /* drop policy */
    uint64_t disconnects[DISC__COUNT];
    uint64_t sends;
    uint64_t zc_sends;
    uint64_t zc_copied;
    uint64_t recv_enobufs;
    uint64_t publisher_stalls; /* recv paused because the log was full */
    uint64_t protocol_errors;  /* frames refused: too long */
    uint64_t protocol_violations[VIOL__COUNT];
    uint64_t auth_failures[AUTHF__COUNT];
    uint64_t auth_successes;
    uint64_t auth_reloads;         /* SIGHUP: the auth file read again */
    uint64_t auth_reload_failures; /* ... and refused: the previous one kept */
    uint64_t tls_handshakes;       /* completed */
    uint64_t tls_failures[TLSF__COUNT];
    uint64_t tls_reloads;         /* SIGHUP: the certificate and key read again and taken */
    uint64_t tls_reload_failures; /* ... and refused: the previous ones kept */
    uint64_t proxy_invalid;       /* proxy listeners: headers refused */
    uint64_t proxy_timeout;       /* ... or not complete within --auth-timeout */
    /* frames per send: batch_count_le[i] counts sends of at most 2^i frames (not cumulative);
     * the last bucket is everything larger */
    uint64_t batch_count_le[STATS_BATCH_BUCKETS + 1];
    uint64_t batch_frames;
    uint64_t batch_sends;
};

/** Count one send that completed @frames frames. */
void stats_observe_batch(struct stats *s, uint64_t frames);

/** The text after "disconnected" for a reason: "." or " (slow consumer)." and so on. */
const char *stats_reason_suffix(enum disconnect_reason r);

#endif
