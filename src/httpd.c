/* The metrics endpoint. One request per connection, answered with Connection: close. */
#include "httpd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringcast/alloc.h"
#include "userdata.h"

static struct io_uring_sqe *http_sqe(struct httpd *h, enum ud_op op, const struct httpd_conn *c)
{
    struct io_uring_sqe *sqe = ring_get_sqe(h->ring);
    uint32_t slot = c ? (uint32_t)(c - h->conns) : 0;
    io_uring_sqe_set_data64(sqe, ud_pack(op, c ? c->gen : 0, slot));
    return sqe;
}

static void arm_accept(struct httpd *h)
{
    struct io_uring_sqe *sqe = http_sqe(h, OP_HTTP_ACCEPT, NULL);
    io_uring_prep_multishot_accept(sqe, h->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    h->accept_armed = true;
}

static void arm_recv(struct httpd *h, struct httpd_conn *c)
{
    struct io_uring_sqe *sqe = http_sqe(h, OP_HTTP_RECV, c);
    io_uring_prep_recv(sqe, c->fd, NULL, 0, 0);
    sqe->ioprio |= IORING_RECV_MULTISHOT;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = h->bufs.bgid;
    c->recv_armed = true;
    c->rearm_later = false;
}

/* Buffers go back at once: the loop publishes only its own group. */
static void recycle(struct httpd *h, uint16_t bid)
{
    ring_bufs_recycle(&h->bufs, bid);
    ring_bufs_publish(&h->bufs);
}

/* Free the slot once nothing of it is outstanding in the kernel (once: callers may ask again). */
static void maybe_free(struct httpd *h, struct httpd_conn *c)
{
    if (!c->used || !c->closing || c->recv_armed || c->send_inflight)
        return;
    close(c->fd);
    rc_free(c->resp.data);
    c->resp = (struct metrics_buf){0};
    c->used = false;
    c->gen = (c->gen + 1) & UD_GEN_MASK;
}

static void conn_close(struct httpd *h, struct httpd_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->recv_armed) {
        struct io_uring_sqe *sqe = http_sqe(h, OP_IGNORE, NULL);
        io_uring_prep_cancel64(sqe, ud_pack(OP_HTTP_RECV, c->gen, (uint32_t)(c - h->conns)), 0);
    }
    maybe_free(h, c);
}

static void send_rest(struct httpd *h, struct httpd_conn *c)
{
    struct io_uring_sqe *sqe = http_sqe(h, OP_HTTP_SEND, c);
    io_uring_prep_send(sqe, c->fd, c->resp.data + c->resp_off, c->resp.len - c->resp_off,
                       MSG_NOSIGNAL);
    c->send_inflight = true;
}

static void respond(struct httpd *h, struct httpd_conn *c, int status, const char *extra_headers,
                    const char *content_type, const char *body, size_t body_len)
{
    static const char *const reasons[] = {[200] = "OK",
                                          [400] = "Bad Request",
                                          [404] = "Not Found",
                                          [405] = "Method Not Allowed",
                                          [503] = "Service Unavailable"};
    if (c->responding)
        return;
    c->responding = true;
    struct metrics_buf *r = &c->resp;
    r->len = 0;
    metrics_buf_printf(r,
                       "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n%s\r\n",
                       status, reasons[status], content_type, body_len, extra_headers);
    if (!c->head_only && body_len)
        metrics_buf_printf(r, "%.*s", (int)body_len, body);
    if (r->failed) {
        conn_close(h, c);
        return;
    }
    c->resp_off = 0;
    send_rest(h, c);
}

static void respond_text(struct httpd *h, struct httpd_conn *c, int status, const char *extra,
                         const char *body)
{
    respond(h, c, status, extra, "text/plain; charset=utf-8", body, strlen(body));
}

static void route(struct httpd *h, struct httpd_conn *c)
{
    h->requests++;
    enum http_method m = (enum http_method)c->parser.method;
    if (m != HTTP_GET && m != HTTP_HEAD) {
        respond_text(h, c, 405, "Allow: GET, HEAD\r\n", "method not allowed\n");
        return;
    }
    c->head_only = m == HTTP_HEAD;
    size_t n = strcspn(c->path, "?#");
    if (n == 8 && !memcmp(c->path, "/metrics", 8)) {
        struct metrics_buf body = {0};
        if (h->render(h->render_ctx, &body) < 0) {
            rc_free(body.data);
            conn_close(h, c);
            return;
        }
        respond(h, c, 200, "", "text/plain; version=0.0.4; charset=utf-8", body.data, body.len);
        rc_free(body.data);
    } else if (n == 8 && !memcmp(c->path, "/healthz", 8)) {
        if (h->healthy)
            respond_text(h, c, 200, "", "ok\n");
        else
            respond_text(h, c, 503, "", "draining\n");
    } else {
        respond_text(h, c, 404, "", "not found\n");
    }
}

/* ===== http-parser callbacks: parser->data is the connection ===== */

/* Request line and headers together are bounded; a non-zero return stops the parser. */
static int count_header_bytes(struct httpd_conn *c, size_t len)
{
    c->request_bytes += (uint32_t)len;
    return c->request_bytes > HTTPD_MAX_HEADER_BYTES;
}

static int on_header_bytes(http_parser *p, const char *at, size_t len)
{
    (void)at;
    return count_header_bytes(p->data, len);
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct httpd_conn *c = p->data;
    if (count_header_bytes(c, len))
        return 1;
    if (c->path_len + len >= sizeof(c->path)) {
        c->path_overflow = true;
        return 0;
    }
    memcpy(c->path + c->path_len, at, len);
    c->path_len += (uint16_t)len;
    c->path[c->path_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    /* Stop here: one request per connection, anything after it is ignored. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_bytes,
    .on_header_value = on_header_bytes,
    .on_message_complete = on_message_complete,
};

static void on_data(struct httpd *h, struct httpd_conn *c, const char *data, size_t len)
{
    if (c->responding)
        return;
    http_parser_execute(&c->parser, &parser_settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (c->request_bytes > HTTPD_MAX_HEADER_BYTES || err == HPE_HEADER_OVERFLOW)
        respond_text(h, c, 400, "", "request header too large\n");
    else if (err == HPE_PAUSED && c->path_overflow)
        respond_text(h, c, 400, "", "request target too long\n");
    else if (err == HPE_PAUSED)
        route(h, c);
    else if (err != HPE_OK)
        respond_text(h, c, 400, "", "bad request\n");
}

static void on_accept(struct httpd *h, int res, unsigned flags, uint64_t now_ns)
{
    if (!(flags & IORING_CQE_F_MORE))
        h->accept_armed = false;
    if (res < 0)
        return;
    struct httpd_conn *c = NULL;
    for (int i = 0; i < HTTPD_MAX_CONNS && !c; i++)
        if (!h->conns[i].used)
            c = &h->conns[i];
    if (!c) {
        h->rejected++;
        close(res);
        return;
    }
    uint32_t gen = c->gen;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    c->used = true;
    c->fd = res;
    c->deadline_ns = now_ns + HTTPD_DEADLINE_NS;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    arm_recv(h, c);
}

void httpd_handle(struct httpd *h, uint64_t user_data, int res, unsigned flags, uint64_t now_ns)
{
    enum ud_op op = ud_op(user_data);
    if (op == OP_HTTP_ACCEPT) {
        on_accept(h, res, flags, now_ns);
        return;
    }
    uint32_t slot = ud_slot(user_data);
    struct httpd_conn *c = slot < HTTPD_MAX_CONNS ? &h->conns[slot] : NULL;
    bool has_buf = flags & IORING_CQE_F_BUFFER;
    uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
    if (!c || !c->used || c->gen != ud_gen(user_data)) {
        if (has_buf)
            recycle(h, bid);
        return;
    }
    if (op == OP_HTTP_RECV) {
        if (!(flags & IORING_CQE_F_MORE))
            c->recv_armed = false;
        if (res > 0 && has_buf && !c->closing)
            on_data(h, c, (const char *)ring_bufs_ptr(&h->bufs, bid), (size_t)res);
        if (has_buf)
            recycle(h, bid);
        if (res <= 0 && res != -ENOBUFS && !c->responding)
            conn_close(h, c); /* EOF or error before a whole request */
        else if (!c->recv_armed && !c->closing && !c->responding && res == -ENOBUFS)
            c->rearm_later = true; /* at once would spin while the ring is empty */
        else if (!c->recv_armed && !c->closing && !c->responding)
            arm_recv(h, c); /* a full CQ ended the multishot */
        maybe_free(h, c);
    } else if (op == OP_HTTP_SEND) {
        c->send_inflight = false;
        if (res > 0)
            c->resp_off += (size_t)res;
        if (res > 0 && c->resp_off < c->resp.len && !c->closing) {
            send_rest(h, c);
            return;
        }
        shutdown(c->fd, SHUT_WR);
        conn_close(h, c);
        maybe_free(h, c); /* already closing (the deadline cancelled this send): free it now */
    }
}

void httpd_tick(struct httpd *h, uint64_t now_ns)
{
    for (int i = 0; i < HTTPD_MAX_CONNS; i++) {
        struct httpd_conn *c = &h->conns[i];
        if (c->used && !c->closing && now_ns >= c->deadline_ns) {
            if (c->send_inflight) {
                /* The peer stopped reading its answer: cancel the send. */
                struct io_uring_sqe *sqe = http_sqe(h, OP_IGNORE, NULL);
                io_uring_prep_cancel64(sqe, ud_pack(OP_HTTP_SEND, c->gen, (uint32_t)i), 0);
            }
            conn_close(h, c);
        } else if (c->used && c->rearm_later && !c->closing && !c->recv_armed) {
            arm_recv(h, c);
        }
    }
    if (!h->accept_armed)
        arm_accept(h);
}

void httpd_set_healthy(struct httpd *h, bool healthy)
{
    h->healthy = healthy;
}

int httpd_init(struct httpd *h, struct io_uring *ring, int listen_fd, httpd_render_fn render,
               void *render_ctx)
{
    memset(h, 0, sizeof(*h));
    int ret = ring_bufs_init(ring, &h->bufs, HTTPD_BGID, HTTPD_BUF_COUNT, HTTPD_BUF_SIZE);
    if (ret < 0) {
        close(listen_fd);
        return ret;
    }
    h->ring = ring;
    h->listen_fd = listen_fd;
    h->render = render;
    h->render_ctx = render_ctx;
    h->healthy = true;
    arm_accept(h);
    return 0;
}

void httpd_destroy(struct httpd *h)
{
    if (!h->ring)
        return;
    for (int i = 0; i < HTTPD_MAX_CONNS; i++) {
        if (h->conns[i].used) {
            close(h->conns[i].fd);
            rc_free(h->conns[i].resp.data);
        }
    }
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    ring_bufs_destroy(h->ring, &h->bufs);
    memset(h, 0, sizeof(*h));
}
