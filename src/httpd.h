/*
 * The metrics endpoint: a small HTTP/1.1 server driven by the relay's own ring (no thread).
 * GET /metrics, GET /healthz; one request per connection; a bounded number of connections, each
 * with a deadline, so a scrape can never stall the relay. Requests are parsed with Debian's
 * http-parser, fed straight from the ring's provided receive buffers.
 */
#ifndef RINGCAST_HTTPD_H
#define RINGCAST_HTTPD_H

#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>

#include "ringcast/metrics.h"
#include "ringcast/ring.h"

#define HTTPD_MAX_CONNS 16
#define HTTPD_MAX_HEADER_BYTES 8192
#define HTTPD_MAX_PATH 256
#define HTTPD_DEADLINE_NS (10ull * 1000 * 1000 * 1000)
/* Its own small provided-buffer group: a scrape never competes with publishers for buffers. */
#define HTTPD_BGID 2
#define HTTPD_BUF_COUNT 32u
#define HTTPD_BUF_SIZE 4096u

/* Fills @out with the /metrics body. */
typedef int (*httpd_render_fn)(void *ctx, struct metrics_buf *out);

struct httpd_conn {
    int fd;
    uint32_t gen;
    bool used : 1;
    bool recv_armed : 1;
    bool send_inflight : 1;
    bool closing : 1;
    bool responding : 1;
    bool rearm_later : 1; /* its recv ended on an empty buffer ring: re-armed on the tick */
    bool head_only : 1;
    http_parser parser;
    uint32_t request_bytes; /* request line and headers so far */
    uint16_t path_len;
    bool path_overflow;
    char path[HTTPD_MAX_PATH];
    struct metrics_buf resp;
    size_t resp_off;
    uint64_t deadline_ns;
};

struct httpd {
    /* private */
    struct io_uring *ring;
    struct ring_bufs bufs;
    int listen_fd;
    bool accept_armed;
    bool healthy; /* /healthz: 200 while true, 503 while draining */
    httpd_render_fn render;
    void *render_ctx;
    uint64_t requests, rejected;
    struct httpd_conn conns[HTTPD_MAX_CONNS];
};

/**
 * Serve on the listening socket @listen_fd (owned by @h from now on), receiving into @bufs'
 * group. @render produces /metrics. Arms the accept. Returns 0.
 */
int httpd_init(struct httpd *h, struct io_uring *ring, int listen_fd, httpd_render_fn render,
               void *render_ctx);

/** Handle a completion whose op is one of OP_HTTP_*. */
void httpd_handle(struct httpd *h, uint64_t user_data, int res, unsigned flags, uint64_t now_ns);

/** Once per tick: close connections past their deadline, re-arm the accept if it ended. */
void httpd_tick(struct httpd *h, uint64_t now_ns);

/** /healthz answers 503 from now on (the relay drains). */
void httpd_set_healthy(struct httpd *h, bool healthy);

/** Free what is left; fds are closed. Safe on a zeroed struct. */
void httpd_destroy(struct httpd *h);

#endif
