/*
 * Fuzz target "http": the metrics endpoint's request path, src/httpd.c as built into the server,
 * driven through its public calls (httpd_init, httpd_handle, httpd_tick, httpd_destroy) with the
 * ring replaced by the few functions of ring.c it calls (defined below): an SQE is recorded, and
 * this file plays the kernel, completing the recvs, sends and cancellations httpd asked for.
 *
 * Input: [flags] [k] [L] [L script bytes] [request...]
 *   flags bit 0: /healthz says draining (503); bit 1: the /metrics renderer fails;
 *         bit 2: the k-th allocation (1 + k % 16) fails
 *   script byte: op = b & 7, arg = b >> 3 (0..31):
 *     0 the next 1..4096 request bytes arrive (arg: 0-15 -> 1-16 bytes, 16-31 -> (arg-15)*256)
 *     1 the same, and the multishot recv ends with them (a full CQ): httpd re-arms
 *     2 the multishot ends with -ENOBUFS: re-armed on the next tick
 *     3 the send in flight completes: all (arg 0), arg/31 of it, or -EPIPE (arg 31)
 *     4 a tick: arg < 16 before the 10 s deadline, else past it
 *     5 a stale completion (an older generation) with a buffer: ignored, the buffer goes back
 *     6 a cancellation httpd asked for lands
 *     7 the peer closes now: EOF (arg even) or -ECONNRESET
 *   Then the rest arrives in 4 KiB buffers, EOF, and every send completes.
 *
 * Checked: what the peer receives, for any split and any order of completions, is what it
 * receives when the request comes in one piece (or a prefix of it when the connection was cut:
 * deadline, send error, early EOF, a failed allocation); a response is well formed (status line,
 * Content-Length matching the body, Connection: close); garbage (a request not starting with an
 * upper-case method) gets 400; 200 and 503 only for GET or HEAD of /metrics or /healthz; at most
 * one recv and one send in flight; every receive buffer goes back at once; a send's bytes stay
 * valid until it completes (ASan); the response buffer stays bounded; a connection never waits
 * with nothing outstanding; and it is freed with nothing of it left in the kernel.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "ringcast/alloc.h"
#include "userdata.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http: check failed: %s: ", #cond);                               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FAKE_FD INT_MAX /* never a valid descriptor: close() and shutdown() fail harmlessly */
#define MAX_SQES 64
#define MAX_RESPONSE (1u << 16)

/* ===== the ring, as far as httpd uses it (the rest of ring.c is not linked) ===== */

static struct io_uring_sqe sqes[MAX_SQES];
static unsigned nsqes;

struct io_uring_sqe *ring_get_sqe(struct io_uring *ring)
{
    (void)ring;
    CHECK(nsqes < MAX_SQES, "more than %d SQEs from one completion", MAX_SQES);
    struct io_uring_sqe *sqe = &sqes[nsqes++];
    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

int ring_bufs_init(struct io_uring *ring, struct ring_bufs *b, uint16_t bgid, uint32_t count,
                   uint32_t size)
{
    (void)ring;
    memset(b, 0, sizeof(*b));
    size_t brlen = (count * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
    b->br = aligned_alloc(4096, brlen);
    b->mem = malloc((size_t)count * size);
    CHECK(b->br && b->mem, "malloc");
    memset(b->br, 0, count * sizeof(struct io_uring_buf));
    io_uring_buf_ring_init(b->br);
    b->count = count;
    b->size = size;
    b->bgid = bgid;
    return 0;
}

void ring_bufs_destroy(struct io_uring *ring, struct ring_bufs *b)
{
    (void)ring;
    free(b->br);
    free(b->mem);
    memset(b, 0, sizeof(*b));
}

/* ===== the kernel's side of one connection ===== */

struct run {
    struct httpd h;
    struct io_uring ring; /* never used: only passed to the functions above */
    uint64_t now;
    bool render_fails;
    /* the connection */
    bool accepted;
    uint32_t slot, gen;
    uint64_t recv_ud, send_ud; /* outstanding ops (0: none) */
    const uint8_t *send_addr;
    uint32_t send_len;
    bool recv_cancel, send_cancel; /* a cancellation for it was submitted */
    uint16_t next_bid;
    /* the peer */
    const uint8_t *req;
    size_t req_len, req_pos;
    bool eof_sent;
    bool cut; /* something ended it early: the response may be a prefix */
    uint8_t resp[MAX_RESPONSE];
    size_t resp_len;
};

static int render(void *ctx, struct metrics_buf *out)
{
    struct run *r = ctx;
    if (r->render_fails)
        return -ENOMEM;
    static const struct stats stats = {.frames_in = 42, .deliveries = 7};
    struct metrics_snapshot m = {
        .stats = &stats,
        .version = "fuzz",
        .features = "buf_ring,recv_multishot",
        .uptime_seconds = 1.5,
        .clients = 3,
        .log_capacity_bytes = 1u << 25,
    };
    return metrics_render(&m, out);
}

static struct httpd_conn *conn(struct run *r)
{
    return r->accepted ? &r->h.conns[r->slot] : NULL;
}

/* What httpd submitted since the last look. */
static void take_sqes(struct run *r)
{
    for (unsigned i = 0; i < nsqes; i++) {
        const struct io_uring_sqe *sqe = &sqes[i];
        uint64_t ud = sqe->user_data;
        switch (sqe->opcode) {
        case IORING_OP_ACCEPT:
            CHECK(ud_op(ud) == OP_HTTP_ACCEPT, "accept op %d", ud_op(ud));
            break;
        case IORING_OP_RECV:
            CHECK(ud_op(ud) == OP_HTTP_RECV && ud_slot(ud) == r->slot, "recv ud %llx",
                  (unsigned long long)ud);
            CHECK(r->recv_ud == 0, "a second recv while one is outstanding");
            CHECK((sqe->flags & IOSQE_BUFFER_SELECT) && sqe->buf_group == HTTPD_BGID,
                  "a recv without httpd's buffer group");
            r->recv_ud = ud;
            r->recv_cancel = false;
            break;
        case IORING_OP_SEND:
            CHECK(ud_op(ud) == OP_HTTP_SEND && ud_slot(ud) == r->slot, "send ud %llx",
                  (unsigned long long)ud);
            CHECK(r->send_ud == 0, "a second send while one is in flight");
            CHECK(sqe->len > 0, "an empty send");
            r->send_ud = ud;
            r->send_addr = (const uint8_t *)(uintptr_t)sqe->addr;
            r->send_len = sqe->len;
            r->send_cancel = false;
            break;
        case IORING_OP_ASYNC_CANCEL:
            if (sqe->addr == r->recv_ud && r->recv_ud)
                r->recv_cancel = true;
            else if (sqe->addr == r->send_ud && r->send_ud)
                r->send_cancel = true;
            break;
        default:
            CHECK(false, "unexpected opcode %d", sqe->opcode);
        }
    }
    nsqes = 0;
}

static void check_conn(struct run *r)
{
    struct httpd_conn *c = conn(r);
    if (!c)
        return;
    if (!c->used) {
        CHECK(!r->recv_ud && !r->send_ud, "the slot was freed with a %s outstanding",
              r->recv_ud ? "recv" : "send");
        /* Freed once: its descriptor closed once, its generation moved on by one. */
        CHECK(c->gen == ((r->gen + 1) & UD_GEN_MASK), "generation %u after %u: freed %u times",
              c->gen, r->gen, (c->gen - r->gen) & UD_GEN_MASK);
        return;
    }
    CHECK(c->resp.cap <= MAX_RESPONSE, "a %zu-byte response buffer", c->resp.cap);
    CHECK(c->request_bytes <= HTTPD_MAX_HEADER_BYTES + HTTPD_BUF_SIZE, "%u request bytes counted",
          c->request_bytes);
    CHECK(c->path_len < sizeof(c->path), "path_len %u", c->path_len);
    /* Something will happen: a completion, the re-arm on the tick, or closing. */
    CHECK(r->recv_ud || r->send_ud || c->rearm_later || c->closing,
          "the connection waits for nothing (responding %d)", c->responding);
}

static void handle(struct run *r, uint64_t ud, int res, unsigned flags)
{
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "cqe op %d gen %u res %d flags %x\n", ud_op(ud), ud_gen(ud), res, flags);
    httpd_handle(&r->h, ud, res, flags, r->now);
    take_sqes(r);
    check_conn(r);
}

/* A recv completion carrying @n request bytes (0: none; then @res says what). */
static void recv_cqe(struct run *r, size_t n, int res, bool more)
{
    uint64_t ud = r->recv_ud;
    if (!more)
        r->recv_ud = 0;
    unsigned flags = more ? IORING_CQE_F_MORE : 0;
    if (n) {
        uint16_t bid = (uint16_t)(r->next_bid++ % HTTPD_BUF_COUNT);
        memcpy(ring_bufs_ptr(&r->h.bufs, bid), r->req + r->req_pos, n);
        r->req_pos += n;
        res = (int)n;
        flags |= IORING_CQE_F_BUFFER | (unsigned)bid << IORING_CQE_BUFFER_SHIFT;
        uint16_t tail = r->h.bufs.br->tail;
        handle(r, ud, res, flags);
        CHECK((uint16_t)(r->h.bufs.br->tail - tail) == 1, "buffer %u did not go back", bid);
        return;
    }
    if (res == 0)
        r->eof_sent = true;
    handle(r, ud, res, flags);
}

static void data(struct run *r, size_t want, bool more)
{
    if (!r->recv_ud)
        return;
    size_t left = r->req_len - r->req_pos;
    if (left == 0) {
        recv_cqe(r, 0, 0, false); /* EOF ends the multishot */
        return;
    }
    recv_cqe(r, want < left ? want : left, 0, more);
}

static void send_cqe(struct run *r, int res)
{
    uint64_t ud = r->send_ud;
    r->send_ud = 0;
    if (res > 0) {
        CHECK(r->resp_len + (size_t)res <= MAX_RESPONSE, "a response over %u bytes", MAX_RESPONSE);
        /* The bytes must still be there: the kernel copies them now (ASan checks the read). */
        memcpy(r->resp + r->resp_len, r->send_addr, (size_t)res);
        r->resp_len += (size_t)res;
    } else {
        r->cut = true;
    }
    handle(r, ud, res, 0);
}

static void stale(struct run *r)
{
    struct httpd_conn *c = conn(r);
    if (!c)
        return;
    uint64_t ud = ud_pack(OP_HTTP_RECV, c->gen + 1, r->slot);
    uint16_t bid = (uint16_t)(r->next_bid++ % HTTPD_BUF_COUNT);
    memset(ring_bufs_ptr(&r->h.bufs, bid), 'X', 16);
    uint16_t tail = r->h.bufs.br->tail;
    handle(r, ud, 16, IORING_CQE_F_MORE | IORING_CQE_F_BUFFER | (unsigned)bid << 16);
    CHECK((uint16_t)(r->h.bufs.br->tail - tail) == 1, "a stale buffer did not go back");
}

static void run_start(struct run *r, uint8_t flags, const uint8_t *req, size_t len)
{
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->req_len = len;
    r->render_fails = flags & 2;
    CHECK(httpd_init(&r->h, &r->ring, -1, render, r) == 0, "httpd_init");
    httpd_set_healthy(&r->h, !(flags & 1));
    take_sqes(r);
    httpd_handle(&r->h, ud_pack(OP_HTTP_ACCEPT, 0, 0), FAKE_FD, IORING_CQE_F_MORE, r->now);
    for (r->slot = 0; r->slot < HTTPD_MAX_CONNS && !r->h.conns[r->slot].used; r->slot++)
        ;
    CHECK(r->slot < HTTPD_MAX_CONNS, "the accepted connection has no slot");
    r->gen = r->h.conns[r->slot].gen;
    r->accepted = true;
    take_sqes(r);
    check_conn(r);
}

static void script_op(struct run *r, uint8_t b)
{
    unsigned op = b & 7, arg = b >> 3;
    struct httpd_conn *c = conn(r);
    switch (op) {
    case 0:
    case 1: {
        size_t n = arg < 16 ? arg + 1u : (arg - 15u) * 256u;
        data(r, n, op == 0);
        break;
    }
    case 2:
        if (r->recv_ud)
            recv_cqe(r, 0, -ENOBUFS, false);
        break;
    case 3:
        if (r->send_ud) {
            int res = arg == 0 ? (int)r->send_len : (int)(r->send_len * arg / 31);
            if (arg == 31)
                res = -EPIPE;
            else if (res == 0)
                res = 1;
            send_cqe(r, res);
        }
        break;
    case 4:
        if (arg >= 16) {
            r->now = HTTPD_DEADLINE_NS + arg;
            if (c && c->used && !c->closing)
                r->cut = true;
        } else {
            r->now = arg * 1000000ull;
        }
        httpd_tick(&r->h, r->now);
        take_sqes(r);
        check_conn(r);
        break;
    case 5:
        stale(r);
        break;
    case 6:
        if (r->recv_ud && r->recv_cancel)
            recv_cqe(r, 0, -ECANCELED, false);
        else if (r->send_ud && r->send_cancel)
            send_cqe(r, -ECANCELED);
        break;
    case 7:
        if (r->recv_ud) {
            r->cut = true;
            recv_cqe(r, 0, arg & 1 ? -ECONNRESET : 0, false);
        }
        break;
    }
}

/* Everything left: the rest of the request, EOF, every send and cancellation, until the slot is
 * free. */
static void run_finish(struct run *r)
{
    for (int steps = 0;; steps++) {
        CHECK(steps < 10000, "the connection never finishes");
        struct httpd_conn *c = conn(r);
        if (r->send_ud) {
            send_cqe(r, r->send_cancel ? -ECANCELED : (int)r->send_len);
        } else if (r->recv_ud && r->recv_cancel) {
            recv_cqe(r, 0, -ECANCELED, false);
        } else if (r->recv_ud) {
            data(r, HTTPD_BUF_SIZE, true);
        } else if (c->used && c->rearm_later) {
            httpd_tick(&r->h, r->now);
            take_sqes(r);
            check_conn(r);
        } else {
            break;
        }
    }
    CHECK(!conn(r)->used, "the connection is still open with nothing outstanding");
}

static void run_end(struct run *r)
{
    httpd_destroy(&r->h);
    nsqes = 0;
}

/* ===== what a response must look like ===== */

static int status_of(const uint8_t *p, size_t len)
{
    if (len < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0)
        return -1;
    return (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
}

static const uint8_t *find(const uint8_t *p, size_t len, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(p + i, s, n) == 0)
            return p + i;
    return NULL;
}

/* Whether the request starts like GET or HEAD of @path (as http-parser reads a request line). */
static bool request_for(const uint8_t *q, size_t len, const char *path, bool *head)
{
    size_t i = 0;
    while (i < len && (q[i] == '\r' || q[i] == '\n'))
        i++;
    if (len - i >= 4 && memcmp(q + i, "GET ", 4) == 0) {
        i += 4;
        *head = false;
    } else if (len - i >= 5 && memcmp(q + i, "HEAD ", 5) == 0) {
        i += 5;
        *head = true;
    } else {
        return false;
    }
    while (i < len && q[i] == ' ')
        i++;
    size_t n = strlen(path);
    if (len - i < n + 1 || memcmp(q + i, path, n) != 0)
        return false;
    return strchr(" ?#\r\n", q[i + n]) != NULL;
}

static void check_response(const uint8_t *p, size_t len, const uint8_t *req, size_t req_len,
                           uint8_t flags)
{
    int status = status_of(p, len);
    CHECK(status == 200 || status == 400 || status == 404 || status == 405 || status == 503,
          "status %d", status);
    const uint8_t *end = find(p, len, "\r\n\r\n");
    CHECK(end != NULL, "no end of headers");
    size_t hlen = (size_t)(end - p) + 4;
    CHECK(find(p, hlen, "\r\nConnection: close\r\n") != NULL, "no Connection: close");
    const uint8_t *cl = find(p, hlen, "\r\nContent-Length: ");
    CHECK(cl != NULL, "no Content-Length");
    size_t body = strtoul((const char *)cl + 18, NULL, 10);
    bool head = false, metrics = request_for(req, req_len, "/metrics", &head),
         healthz = request_for(req, req_len, "/healthz", &head);
    /* A routed HEAD request gets the headers only. */
    size_t i = 0;
    while (i < req_len && (req[i] == '\r' || req[i] == '\n'))
        i++;
    head = req_len - i >= 5 && memcmp(req + i, "HEAD ", 5) == 0 &&
           (status == 200 || status == 404 || status == 503);
    CHECK(len - hlen == (head ? 0 : body), "Content-Length %zu, body %zu (HEAD %d)", body,
          len - hlen, head);
    if (status == 200)
        CHECK(metrics || (healthz && !(flags & 1)), "200 for another request");
    if (status == 503)
        CHECK(healthz && (flags & 1), "503 for another request");
    /* Garbage: the first byte that is not a line end cannot start a method. */
    if (i < req_len && (req[i] < 'A' || req[i] > 'Z'))
        CHECK(status == 400, "%d for a request starting with byte %u", status, req[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data_in, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data_in[0], k = data_in[1];
    size_t script_len = data_in[2];
    if (size < 3 + script_len)
        return 0;
    const uint8_t *script = data_in + 3;
    const uint8_t *req = data_in + 3 + script_len;
    size_t req_len = size - 3 - script_len;
    static struct run ref, run;

    /* The reference: the request in one piece (4 KiB buffers), every send whole. */
    run_start(&ref, flags, req, req_len);
    run_finish(&ref);
    if (ref.resp_len) {
        check_response(ref.resp, ref.resp_len, req, req_len, flags);
    } else {
        /* No answer: the request never completed, or the renderer failed. */
        size_t i = 0;
        while (i < req_len && (req[i] == '\r' || req[i] == '\n'))
            i++;
        CHECK(i == req_len || (req[i] >= 'A' && req[i] <= 'Z'),
              "no answer to garbage (byte %u first)", req[i]);
    }

    /* The same request split and interleaved as the script says. */
    if (flags & 4)
        rc_alloc_fail_after(1 + k % 16);
    run_start(&run, flags, req, req_len);
    for (size_t i = 0; i < script_len && conn(&run)->used; i++)
        script_op(&run, script[i]);
    if (conn(&run)->used)
        run_finish(&run);
    rc_alloc_fail_after(0);
    bool cut = run.cut || (flags & 4);
    if (cut)
        CHECK(run.resp_len <= ref.resp_len && memcmp(run.resp, ref.resp, run.resp_len) == 0,
              "a cut run sent %zu bytes that are not a prefix of the %zu-byte answer", run.resp_len,
              ref.resp_len);
    else
        CHECK(run.resp_len == ref.resp_len && memcmp(run.resp, ref.resp, run.resp_len) == 0,
              "the split request got %zu bytes, in one piece %zu (or other bytes)", run.resp_len,
              ref.resp_len);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "in one piece: %zu bytes (status %d); split: %zu bytes%s\n", ref.resp_len,
                status_of(ref.resp, ref.resp_len), run.resp_len, cut ? " (cut)" : "");
    run_end(&run);
    run_end(&ref);
    return 0;
}
