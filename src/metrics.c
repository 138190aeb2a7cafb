/* Prometheus text format: each family gets HELP and TYPE lines, then its samples. */
#include "ringcast/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ringcast/alloc.h"

void metrics_buf_printf(struct metrics_buf *out, const char *fmt, ...)
{
    if (out->failed)
        return;
    for (;;) {
        size_t room = out->cap - out->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(out->data ? out->data + out->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            out->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            out->len += (size_t)n;
            return;
        }
        size_t cap = out->cap ? out->cap * 2 : 4096;
        while (cap - out->len <= (size_t)n)
            cap *= 2;
        char *data = rc_realloc(out->data, cap);
        if (!data) {
            out->failed = 1;
            return;
        }
        out->data = data;
        out->cap = cap;
    }
}

static void family(struct metrics_buf *b, const char *name, const char *type, const char *help)
{
    metrics_buf_printf(b, "# HELP ringcast_%s %s\n# TYPE ringcast_%s %s\n", name, help, name, type);
}

static void sample(struct metrics_buf *b, const char *name, uint64_t v)
{
    metrics_buf_printf(b, "ringcast_%s %llu\n", name, (unsigned long long)v);
}

static void counter(struct metrics_buf *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "counter", help);
    sample(b, name, v);
}

static void gauge(struct metrics_buf *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "gauge", help);
    sample(b, name, v);
}

/* Label values for disconnect reasons, in enum order. */
static const char *const reason_label[DISC__COUNT] = {
    [DISC_EOF] = "eof",
    [DISC_RESET] = "reset",
    [DISC_SLOW_CONSUMER] = "slow_consumer",
    [DISC_FRAME_TOO_LONG] = "frame_too_long",
    [DISC_PARTIAL_TIMEOUT] = "partial_timeout",
    [DISC_PARTIAL_MEMORY] = "partial_memory",
    [DISC_NO_MEMORY] = "no_memory",
    [DISC_SHUTDOWN] = "shutdown",
    [DISC_PROTOCOL_VIOLATION] = "protocol_violation",
    [DISC_AUTH_FAILED] = "auth_failed",
    [DISC_TOKEN_REVOKED] = "token_revoked",
    [DISC_TLS_FAILED] = "tls_failed",
    [DISC_PROXY_FAILED] = "proxy_failed",
};

/* Label values for AUTH failures, in enum order. */
static const char *const auth_failure_label[AUTHF__COUNT] = {
    [AUTHF_MISSING] = "missing", [AUTHF_MALFORMED] = "malformed", [AUTHF_BAD_TOKEN] = "bad_token",
    [AUTHF_ROLE] = "role",       [AUTHF_TIMEOUT] = "timeout",
};

/* Label values for protocol violations, in enum order. */
static const char *const violation_label[VIOL__COUNT] = {
    [VIOL_SUB_SENT] = "sub_sent",
};

/* Clients and connections by listener and role. A family of their own: labelled samples beside
 * the unlabelled ringcast_clients in one family would make sum(ringcast_clients) count every
 * client twice. */
static void listener_families(struct metrics_buf *b, const struct metrics_snapshot *m)
{
    family(b, "listener_clients", "gauge", "Connected relay clients, by listener and role.");
    for (size_t i = 0; i < m->nlisteners; i++)
        metrics_buf_printf(b, "ringcast_listener_clients{listener=\"%s\",role=\"%s\"} %llu\n",
                           m->listeners[i].address, m->listeners[i].role,
                           (unsigned long long)m->listeners[i].clients);
    family(b, "listener_connections_accepted_total", "counter",
           "Relay connections registered, by listener and role.");
    for (size_t i = 0; i < m->nlisteners; i++)
        metrics_buf_printf(
            b,
            "ringcast_listener_connections_accepted_total{listener=\"%s\",role=\"%s\"} "
            "%llu\n",
            m->listeners[i].address, m->listeners[i].role,
            (unsigned long long)m->listeners[i].accepted);
}

/* Label values for TLS handshake failures, in enum order. */
static const char *const tls_failure_label[TLSF__COUNT] = {
    [TLSF_PROTOCOL] = "protocol",       [TLSF_TIMEOUT] = "timeout", [TLSF_BUSY] = "busy",
    [TLSF_CLIENT_CERT] = "client_cert", [TLSF_ROLE] = "role",
};

/* TLS listeners: handshakes, failures, the certificate's expiry, reloads. */
static void tls_families(struct metrics_buf *b, const struct metrics_snapshot *m)
{
    const struct stats *s = m->stats;
    counter(b, "tls_handshakes_total", "TLS handshakes completed.", s->tls_handshakes);
    family(b, "tls_handshake_failures_total", "counter",
           "TLS connections closed before their handshake completed, by reason.");
    for (int f = 0; f < TLSF__COUNT; f++)
        metrics_buf_printf(b, "ringcast_tls_handshake_failures_total{reason=\"%s\"} %llu\n",
                           tls_failure_label[f], (unsigned long long)s->tls_failures[f]);
    if (m->tls_on) {
        family(b, "tls_certificate_expiry_seconds", "gauge",
               "When the TLS certificate in use expires, seconds since the epoch.");
        metrics_buf_printf(b, "ringcast_tls_certificate_expiry_seconds %lld\n",
                           (long long)m->tls_not_after);
    }
    counter(b, "tls_reloads_total", "Times SIGHUP read the certificate and key and took them.",
            s->tls_reloads);
    counter(b, "tls_reload_failures_total",
            "Times SIGHUP found the certificate or key unusable and kept the previous ones.",
            s->tls_reload_failures);
}

/* Authentication (--auth-file): outcomes and reloads. Counts only: never a token. */
static void auth_families(struct metrics_buf *b, const struct metrics_snapshot *m)
{
    const struct stats *s = m->stats;
    family(b, "auth_failures_total", "counter",
           "Clients disconnected because their AUTH failed, by reason.");
    for (int f = 0; f < AUTHF__COUNT; f++)
        metrics_buf_printf(b, "ringcast_auth_failures_total{reason=\"%s\"} %llu\n",
                           auth_failure_label[f], (unsigned long long)s->auth_failures[f]);
    counter(b, "auth_successes_total", "Clients that authenticated.", s->auth_successes);
    counter(b, "auth_reloads_total", "Times SIGHUP read the auth file and took it.",
            s->auth_reloads);
    counter(b, "auth_reload_failures_total",
            "Times SIGHUP found the auth file unusable and kept the previous one.",
            s->auth_reload_failures);
    gauge(b, "auth_tokens", "Tokens loaded from the auth file.", m->auth_tokens);
}

int metrics_render(const struct metrics_snapshot *m, struct metrics_buf *b)
{
    const struct stats *s = m->stats;

    family(b, "build_info", "gauge", "Version and the kernel features in use, as labels.");
    metrics_buf_printf(b, "ringcast_build_info{version=\"%s\",features=\"%s\"} 1\n", m->version,
                       m->features);
    family(b, "uptime_seconds", "gauge", "Seconds since the relay started.");
    metrics_buf_printf(b, "ringcast_uptime_seconds %.3f\n", m->uptime_seconds);
    gauge(b, "clients", "Connected relay clients.", m->clients);

    listener_families(b, m);
    family(b, "proxy_header_failures_total", "counter",
           "Connections on proxy listeners closed without a valid PROXY header, by reason.");
    metrics_buf_printf(b, "ringcast_proxy_header_failures_total{reason=\"invalid\"} %llu\n",
                       (unsigned long long)s->proxy_invalid);
    metrics_buf_printf(b, "ringcast_proxy_header_failures_total{reason=\"timeout\"} %llu\n",
                       (unsigned long long)s->proxy_timeout);
    counter(b, "connections_accepted_total", "Relay connections accepted.", s->accepted);
    family(b, "connections_rejected_total", "counter",
           "Relay connections closed at once, by reason.");
    metrics_buf_printf(b, "ringcast_connections_rejected_total{reason=\"max_clients\"} %llu\n",
                       (unsigned long long)s->rejected_max_clients);
    metrics_buf_printf(b, "ringcast_connections_rejected_total{reason=\"emfile\"} %llu\n",
                       (unsigned long long)s->rejected_emfile);
    metrics_buf_printf(b, "ringcast_connections_rejected_total{reason=\"per_ip\"} %llu\n",
                       (unsigned long long)s->rejected_per_ip);

    counter(b, "frames_received_total", "Complete frames received from clients.", s->frames_in);
    counter(b, "bytes_received_total", "Bytes of complete frames received.", s->bytes_in);
    counter(b, "frames_delivered_total", "Frames whose last byte a receiver's socket took.",
            s->deliveries);
    counter(b, "bytes_delivered_total", "Bytes receivers' sockets took.", s->bytes_out);
    counter(b, "frames_dropped_total", "Frames discarded for slow clients (drop policy).",
            s->frames_dropped);

    family(b, "disconnects_total", "counter", "Client disconnects, by reason.");
    for (int r = 0; r < DISC__COUNT; r++)
        metrics_buf_printf(b, "ringcast_disconnects_total{reason=\"%s\"} %llu\n", reason_label[r],
                           (unsigned long long)s->disconnects[r]);

    counter(b, "protocol_errors_total", "Frames refused as malformed (too long).",
            s->protocol_errors);
    family(b, "protocol_violations_total", "counter",
           "Clients disconnected for doing what their listener does not allow, by reason.");
    for (int v = 0; v < VIOL__COUNT; v++)
        metrics_buf_printf(b, "ringcast_protocol_violations_total{reason=\"%s\"} %llu\n",
                           violation_label[v], (unsigned long long)s->protocol_violations[v]);
    auth_families(b, m);
    tls_families(b, m);
    counter(b, "sends_total", "Send operations to clients.", s->sends);
    counter(b, "zerocopy_sends_total", "Zero-copy send operations.", s->zc_sends);
    counter(b, "zerocopy_copied_total",
            "Zero-copy sends whose notification said the kernel copied anyway.", s->zc_copied);
    counter(b, "recv_buffers_exhausted_total",
            "Times the shared receive buffer ring was empty (recv re-armed later).",
            s->recv_enobufs);
    counter(b, "publisher_stalls_total",
            "Times a publisher was paused because a reading client was at its quota.",
            s->publisher_stalls);

    family(b, "send_batch_frames", "histogram", "Frames carried by each completed send.");
    uint64_t cumulative = 0;
    for (int i = 0; i < STATS_BATCH_BUCKETS; i++) {
        cumulative += s->batch_count_le[i];
        metrics_buf_printf(b, "ringcast_send_batch_frames_bucket{le=\"%llu\"} %llu\n", 1ull << i,
                           (unsigned long long)cumulative);
    }
    cumulative += s->batch_count_le[STATS_BATCH_BUCKETS];
    metrics_buf_printf(b, "ringcast_send_batch_frames_bucket{le=\"+Inf\"} %llu\n",
                       (unsigned long long)cumulative);
    sample(b, "send_batch_frames_sum", s->batch_frames);
    sample(b, "send_batch_frames_count", s->batch_sends);

    gauge(b, "pending_output_bytes", "Output queued for clients and not yet taken by sockets.",
          m->pending_bytes);
    gauge(b, "max_client_backlog_bytes", "The largest pending output of a single client.",
          m->max_backlog_bytes);
    gauge(b, "clients_waiting_writable",
          "Clients whose socket is full: waiting for their reader to make room.",
          m->clients_waiting_writable);
    gauge(b, "partial_frame_bytes", "Memory held by incomplete frames.", m->partial_bytes);
    gauge(b, "log_capacity_bytes", "Size of the broadcast log.", m->log_capacity_bytes);
    return b->failed ? -ENOMEM : 0;
}
