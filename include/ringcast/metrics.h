/*
 * The Prometheus text exposition (format 0.0.4) of a loop's counters. Pure: the loop gathers a
 * snapshot, this module only formats it.
 */
#ifndef RINGCAST_METRICS_H
#define RINGCAST_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "ringcast/stats.h"

/* One relay listener, for the families labelled by listener and role. */
struct metrics_listener {
    const char *address; /* "ADDR:PORT" as it listens (the real port) */
    const char *role;    /* "both", "pub" or "sub" */
    uint64_t clients;    /* connected through it now */
    uint64_t accepted;   /* connections it registered since the start */
};

struct metrics_snapshot {
    const struct stats *stats;
    const char *version;
    const char *features; /* comma-separated kernel features in use */
    double uptime_seconds;
    uint64_t clients;
    uint64_t pending_bytes;            /* output queued for all clients, not yet taken by sockets */
    uint64_t max_backlog_bytes;        /* the largest of those per client */
    uint64_t clients_waiting_writable; /* sockets full: their readers set the pace */
    uint64_t partial_bytes;            /* memory held by incomplete frames */
    uint64_t log_capacity_bytes;       /* the broadcast log */
    uint64_t auth_tokens;              /* tokens loaded (--auth-file) */
    int tls_on;                        /* some listener is tls */
    int64_t tls_not_after;             /* its certificate's expiry, seconds since the epoch */
    const struct metrics_listener *listeners; /* the default listener first */
    size_t nlisteners;
};

/* A growable output buffer. */
struct metrics_buf {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
};

/**
 * Append the exposition of @m to @out (which may be empty: {0}). The caller frees out->data with
 * rc_free. Returns 0, or -ENOMEM (out->failed is then set).
 */
int metrics_render(const struct metrics_snapshot *m, struct metrics_buf *out);

/** printf-style append to @out; sets out->failed on allocation failure. */
void metrics_buf_printf(struct metrics_buf *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
