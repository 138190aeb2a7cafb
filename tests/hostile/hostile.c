/* Helpers for the bug-regression tests: see hostile.h. */
#include "hostile.h"
#include "hostage.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

/* ------------------------------------------------------------------ the server */

/* The relay with --metrics on a port it picks, and *mport read from its "Metrics at:" line. */
static struct rc_server *start_metrics_v(int *mport, const char *const *env, const char *arg,
                                         va_list ap)
{
    const char *argv[64];
    size_t n = 0;
    argv[n++] = "--metrics";
    argv[n++] = "127.0.0.1:0";
    for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *))
        argv[n++] = a;
    argv[n] = NULL;
    struct rc_opts o = {.argv = argv, .env = env};
    struct rc_server *s = rc_start_ex(&o);
    static const char prefix[] = "Metrics at: http://127.0.0.1:";
    char line[256];
    if (!rc_log_wait(s, 0, prefix, RC_WAIT_MS) || !rc_log_find(s, 0, prefix, line, sizeof(line)))
        fail_msg("no \"%s...\" line", prefix);
    *mport = atoi(strstr(line, prefix) + strlen(prefix));
    if (*mport <= 0 || *mport > 65535)
        fail_msg("unexpected metrics line \"%s\"", line);
    return s;
}

struct rc_server *hx_start_metrics(int *mport, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    struct rc_server *s = start_metrics_v(mport, NULL, arg, ap);
    va_end(ap);
    return s;
}

void hx_expect_alive(struct rc_server *s, const char *when)
{
    if (rc_alive(s))
        return;
    rc_dump(s);
    fail_msg("the server died %s (wait status 0x%x%s)", when, s->status,
             WIFSIGNALED(s->status) ? ", killed by a signal" : "");
}

bool hx_gone(struct rc_server *s, size_t mark, int port, char *buf, size_t cap)
{
    char needle[64];
    rc_needle(needle, sizeof(needle), port, "disconnected");
    return rc_log_find(s, mark, needle, buf, cap);
}

/* ------------------------------------------------------------------ the metrics endpoint */

int hx_http_get(struct rc_server *s, int mport, const char *path, int timeout_ms, char **resp)
{
    if (resp)
        *resp = NULL;
    struct rc_server m = *s;
    m.port = mport;
    int fd = rc_connect_addr(&m, "127.0.0.1", 0);
    char req[256];
    int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    int64_t start = rc_now_ms();
    if (rc_send_lenient(fd, req, (size_t)len, timeout_ms) < (size_t)len) {
        rc_close(fd);
        return 0;
    }
    size_t cap = 1u << 20;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    int left = timeout_ms - (int)(rc_now_ms() - start);
    size_t n = rc_recv_until_eof(fd, buf, cap, left > 0 ? left : 0);
    rc_close(fd);
    int status = 0;
    if (n != (size_t)-1) {
        if (n > cap)
            n = cap;
        buf[n] = '\0';
        if (sscanf(buf, "HTTP/1.1 %d ", &status) != 1)
            status = 0;
    }
    if (resp && status) {
        *resp = buf;
        return status;
    }
    free(buf);
    return status;
}

bool hx_metric(const char *resp, const char *name, double *value)
{
    const char *body = strstr(resp, "\r\n\r\n");
    size_t n = strlen(name);
    for (const char *p = body ? body + 4 : resp; p && *p;) {
        if (!strncmp(p, name, n) && p[n] == ' ') {
            *value = strtod(p + n + 1, NULL);
            return true;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

double hx_scrape(struct rc_server *s, int mport, const char *name)
{
    char *resp;
    int status = hx_http_get(s, mport, "/metrics", RC_IO_MS, &resp);
    if (status != 200) {
        rc_dump(s);
        fail_msg("GET /metrics answered %d (0: nothing within %d ms)", status, RC_IO_MS);
    }
    double v;
    if (!hx_metric(resp, name, &v))
        fail_msg("no sample %s in the scrape:\n%s", name, resp);
    free(resp);
    return v;
}

/* ------------------------------------------------------------------ numbered frames */

#define HX_HEAD 9 /* tag byte and 8 hex digits of sequence number */

static void frame_payload(uint8_t *p, size_t len, uint8_t tag, uint32_t seq)
{
    char head[HX_HEAD + 1];
    snprintf(head, sizeof(head), "%c%08x", tag, seq);
    memcpy(p, head, HX_HEAD);
    for (size_t i = HX_HEAD; i < len; i++)
        p[i] = (uint8_t)('a' + (tag * 31u + seq * 7u + i) % 26);
}

size_t hx_frame_line(uint8_t *buf, size_t len, uint8_t tag, uint32_t seq)
{
    assert_true(len >= HX_HEAD + 1 && tag != '\n');
    frame_payload(buf, len - 1, tag, seq);
    buf[len - 1] = '\n';
    return len;
}

size_t hx_frame_len32(uint8_t *buf, size_t len, uint8_t tag, uint32_t seq)
{
    assert_true(len >= HX_HEAD);
    buf[0] = (uint8_t)(len >> 24);
    buf[1] = (uint8_t)(len >> 16);
    buf[2] = (uint8_t)(len >> 8);
    buf[3] = (uint8_t)len;
    frame_payload(buf + 4, len, tag, seq);
    return 4 + len;
}

void hx_check_init(struct hx_check *c, bool len32)
{
    memset(c, 0, sizeof(*c));
    c->len32 = len32;
}

void hx_check_free(struct hx_check *c)
{
    free(c->buf);
    c->buf = NULL;
}

/* Checks one whole frame's payload; false (with err set) when it is not one we sent in order. */
static bool check_payload(struct hx_check *c, const uint8_t *p, size_t len)
{
    if (len < HX_HEAD) {
        snprintf(c->err, sizeof(c->err), "frame %llu: %zu-byte payload, too short to be ours",
                 (unsigned long long)c->frames, len);
        return false;
    }
    char hex[9];
    memcpy(hex, p + 1, 8);
    hex[8] = '\0';
    char *end;
    unsigned long seq = strtoul(hex, &end, 16);
    uint8_t tag = p[0];
    if (*end != '\0') {
        snprintf(c->err, sizeof(c->err), "frame %llu: no sequence number (\"%.9s\")",
                 (unsigned long long)c->frames, (const char *)p);
        return false;
    }
    if (c->got[tag] >= c->want[tag]) {
        snprintf(c->err, sizeof(c->err),
                 "frame %llu: '%c' #%lu, but all %u frames of '%c' were already received",
                 (unsigned long long)c->frames, tag, seq, c->want[tag], tag);
        return false;
    }
    if (seq != c->got[tag]) {
        snprintf(c->err, sizeof(c->err), "frame %llu: '%c' #%lu where #%u was due (%s)",
                 (unsigned long long)c->frames, tag, seq, c->got[tag],
                 seq < c->got[tag] ? "duplicate or reordered" : "frames lost");
        return false;
    }
    for (size_t i = HX_HEAD; i < len; i++) {
        if (p[i] != (uint8_t)('a' + (tag * 31u + (uint32_t)seq * 7u + i) % 26)) {
            snprintf(c->err, sizeof(c->err), "frame '%c' #%lu: corrupt at payload byte %zu", tag,
                     seq, i);
            return false;
        }
    }
    c->got[tag]++;
    c->frames++;
    return true;
}

/* Length on the wire of the frame at p (of n bytes available), 0 when incomplete. */
static size_t wire_len(const struct hx_check *c, const uint8_t *p, size_t n)
{
    if (!c->len32) {
        const uint8_t *nl = memchr(p, '\n', n);
        return nl ? (size_t)(nl - p) + 1 : 0;
    }
    if (n < 4)
        return 0;
    size_t len = 4 + ((size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
    return n >= len ? len : 0;
}

/* Room for len bytes of carried-over frame. */
static bool reserve(struct hx_check *c, size_t len)
{
    if (len <= c->cap)
        return true;
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < len)
        cap *= 2;
    if (cap > (64u << 20)) {
        snprintf(c->err, sizeof(c->err), "a frame longer than 64 MiB: framing lost");
        return false;
    }
    uint8_t *buf = realloc(c->buf, cap);
    assert_non_null(buf);
    c->buf = buf;
    c->cap = cap;
    return true;
}

static bool check_one(struct hx_check *c, const uint8_t *p, size_t wire)
{
    return c->len32 ? check_payload(c, p + 4, wire - 4) : check_payload(c, p, wire - 1);
}

bool hx_check_feed(struct hx_check *c, const uint8_t *p, size_t n)
{
    if (c->err[0])
        return false;
    c->bytes += n;
    /* Complete the frame carried over first. */
    while (c->len && n) {
        size_t take;
        if (c->len32 && c->len < 4) {
            take = 4 - c->len;
        } else if (c->len32) {
            take = 4 +
                   ((size_t)c->buf[0] << 24 | (size_t)c->buf[1] << 16 | (size_t)c->buf[2] << 8 |
                    c->buf[3]) -
                   c->len;
        } else {
            const uint8_t *nl = memchr(p, '\n', n);
            take = nl ? (size_t)(nl - p) + 1 : n;
        }
        if (take > n)
            take = n;
        if (!reserve(c, c->len + take))
            return false;
        memcpy(c->buf + c->len, p, take);
        c->len += take;
        p += take;
        n -= take;
        size_t w = wire_len(c, c->buf, c->len);
        if (w) {
            bool ok = check_one(c, c->buf, w);
            c->len = 0;
            if (!ok)
                return false;
        }
    }
    /* Whole frames straight from the input. */
    for (size_t w; n && (w = wire_len(c, p, n)) != 0; p += w, n -= w)
        if (!check_one(c, p, w))
            return false;
    if (n) {
        if (!reserve(c, n))
            return false;
        memcpy(c->buf, p, n);
        c->len = n;
    }
    return true;
}

bool hx_check_complete(const struct hx_check *c)
{
    if (c->err[0] || c->len)
        return false;
    for (int t = 0; t < 256; t++)
        if (c->got[t] != c->want[t])
            return false;
    return true;
}

void hx_check_describe(const struct hx_check *c, char *buf, size_t cap)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, cap - off, "%llu frames, %llu bytes;",
                            (unsigned long long)c->frames, (unsigned long long)c->bytes);
    for (int t = 0; t < 256 && off < cap; t++)
        if (c->want[t] || c->got[t])
            off += (size_t)snprintf(buf + off, cap - off, " '%c' %u/%u", t, c->got[t], c->want[t]);
    if (c->err[0] && off < cap)
        snprintf(buf + off, cap - off, "; error: %s", c->err);
}

/* ------------------------------------------------------------------ driving many clients */

bool hx_pump(struct rc_server *s, struct hx_peer *peers, size_t n, const struct hx_pump_opts *opts,
             const char **why)
{
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    size_t scratch_cap = 1u << 20;
    uint8_t *scratch = malloc(scratch_cap);
    assert_non_null(pfd);
    assert_non_null(scratch);
    int64_t deadline = rc_now_ms() + opts->timeout_ms;
    int64_t next_alive = 0, last_move = rc_now_ms();
    const char *reason = "timeout";
    for (long round = 0; round < 100000000L; round++) {
        if (opts->done(opts->arg)) {
            reason = "done";
            break;
        }
        int64_t now = rc_now_ms();
        if (now >= deadline)
            break;
        if (opts->stall_ms && now - last_move >= opts->stall_ms) {
            reason = "stall";
            break;
        }
        if (now >= next_alive) {
            hx_expect_alive(s, "while clients were being driven");
            next_alive = now + 200;
        }
        for (size_t i = 0; i < n; i++) {
            struct hx_peer *p = &peers[i];
            pfd[i].fd = p->closed ? -1 : p->fd;
            pfd[i].events = (p->read ? POLLIN : 0) | (p->out_done < p->out_len ? POLLOUT : 0);
            pfd[i].revents = 0;
        }
        int wait = (int)(deadline - now);
        poll(pfd, n, wait < 20 ? wait : 20);
        for (size_t i = 0; i < n; i++) {
            struct hx_peer *p = &peers[i];
            if (p->closed || !pfd[i].revents)
                continue;
            if (p->read && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                /* Bounded: at most 16 MiB per peer per round, so the others get their turn. */
                for (int k = 0; k < 16; k++) {
                    ssize_t got = recv(p->fd, scratch, scratch_cap, MSG_DONTWAIT);
                    if (got > 0) {
                        p->in_done += (uint64_t)got;
                        last_move = rc_now_ms();
                        bool good = true;
                        if (p->check)
                            good = hx_check_feed(p->check, scratch, (size_t)got);
                        if (p->on_data)
                            good = p->on_data(p->data_arg, scratch, (size_t)got) && good;
                        if (!good) {
                            reason = "check"; /* the caller reports the check's error */
                            goto out;
                        }
                        continue;
                    }
                    if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                        p->closed = true;
                    break;
                }
            }
            if (!p->closed && (pfd[i].revents & POLLOUT) && p->out_done < p->out_len) {
                size_t len = p->out_len - p->out_done;
                if (p->chunk && len > p->chunk)
                    len = p->chunk;
                ssize_t put = send(p->fd, p->out + p->out_done, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (put > 0) {
                    p->out_done += (size_t)put;
                    last_move = rc_now_ms();
                } else if (put < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    p->closed = true;
                }
            }
        }
        if (opts->tick)
            opts->tick(opts->arg);
    }
out:
    free(pfd);
    free(scratch);
    if (why)
        *why = reason;
    return reason[0] == 'd';
}

/* ------------------------------------------------------------------ connection and metrics abuse
 */

struct rc_server *hx_start_metrics_env(int *mport, const char *const *env, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    struct rc_server *s = start_metrics_v(mport, env, arg, ap);
    va_end(ap);
    return s;
}

double hx_metric_sum(const char *resp, const char *prefix)
{
    const char *body = strstr(resp, "\r\n\r\n");
    size_t n = strlen(prefix);
    double sum = 0;
    for (const char *p = body ? body + 4 : resp; p && *p;) {
        if (!strncmp(p, prefix, n)) {
            const char *sp = strchr(p, ' ');
            const char *nl = strchr(p, '\n');
            if (sp && (!nl || sp < nl))
                sum += strtod(sp + 1, NULL);
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return sum;
}

static void nap(int ms)
{
    struct pollfd none = {.fd = -1};
    poll(&none, 1, ms);
}

double hx_wait_metric(struct rc_server *s, int mport, const char *name, double want, int timeout_ms)
{
    int64_t deadline = rc_now_ms() + timeout_ms;
    double v = hx_scrape(s, mport, name);
    for (int i = 0; i < 100000 && v != want && rc_now_ms() < deadline; i++) {
        nap(20);
        v = hx_scrape(s, mport, name);
    }
    return v;
}

void hx_expect_fds(struct rc_server *s, int want, const char *when)
{
    int n = rc_wait_fd_count(s, want, RC_WAIT_MS);
    if (n != want) {
        rc_dump_sockets(s);
        fail_msg("%s: the server has %d descriptors open, %d when idle (leak?)", when, n, want);
    }
}

void hx_expect_metrics_consistent(struct rc_server *s, int mport, double want_clients)
{
    char *resp;
    int status = hx_http_get(s, mport, "/metrics", RC_IO_MS, &resp);
    if (status != 200) {
        rc_dump(s);
        fail_msg("GET /metrics answered %d (0: nothing within %d ms)", status, RC_IO_MS);
    }
    double clients = -1, accepted = -1;
    hx_metric(resp, "ringcast_clients", &clients);
    hx_metric(resp, "ringcast_connections_accepted_total", &accepted);
    double gone = hx_metric_sum(resp, "ringcast_disconnects_total{");
    if (clients != want_clients || accepted - gone != clients) {
        fprintf(stderr, "%s\n", resp);
        free(resp);
        fail_msg("metrics: clients %.0f (want %.0f), accepted %.0f - disconnects %.0f = %.0f "
                 "(want clients)",
                 clients, want_clients, accepted, gone, accepted - gone);
    }
    free(resp);
}

void hx_expect_relays(struct rc_server *s)
{
    int b = rc_connect_raw(s, 0);
    int a = rc_connect_raw(s, 0);
    char got[256];
    size_t have = 0;
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    uint32_t seq = 0;
    bool ok = false;
    for (; seq < 100000 && !ok && rc_now_ms() < deadline; seq++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "fresh %08u\n", seq);
        rc_send(a, line, (size_t)n);
        int64_t until = rc_now_ms() + 50;
        while (!ok && rc_now_ms() < until) {
            struct pollfd p = {.fd = b, .events = POLLIN};
            poll(&p, 1, 10);
            ssize_t r = rc_recv_now(b, got + have, sizeof(got) - 1 - have);
            if (r < 0)
                fail_msg("a fresh client was disconnected");
            have += (size_t)r;
            got[have] = '\0';
            ok = have >= 15 && strchr(got, '\n');
        }
    }
    if (!ok) {
        rc_dump(s);
        fail_msg("a fresh pair of clients could not exchange a frame within %d ms", RC_WAIT_MS);
    }
    /* What arrived is whole "fresh NNNNNNNN\n" lines (possibly several), nothing else. */
    for (size_t at = 0; at + 15 <= have; at += 15) {
        unsigned v;
        if (sscanf(got + at, "fresh %8u", &v) != 1 || got[at + 14] != '\n' || v >= seq)
            fail_msg("a fresh client received \"%.*s\"", (int)have, got);
    }
    rc_close(a);
    rc_close(b);
}

void hx_http_raw(struct rc_server *s, int mport, const void *req, size_t len, int timeout_ms,
                 struct hx_http *out)
{
    memset(out, 0, sizeof(*out));
    struct rc_server m = *s;
    m.port = mport;
    int64_t t0 = rc_now_ms();
    int fd = rc_connect_addr(&m, "127.0.0.1", 0);
    size_t cap = 1u << 20;
    out->resp = malloc(cap + 1);
    assert_non_null(out->resp);
    int64_t deadline = t0 + timeout_ms;
    while (rc_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (out->sent < len ? POLLOUT : 0)};
        int64_t left = deadline - rc_now_ms();
        poll(&p, 1, left > 0 ? (int)left : 0);
        if (out->sent < len && (p.revents & POLLOUT)) {
            ssize_t n = send(fd, (const char *)req + out->sent, len - out->sent,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                out->sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                out->sent = len; /* the server closed: read what it said */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, out->resp + out->len, cap - out->len, MSG_DONTWAIT);
            if (n > 0) {
                out->len += (size_t)n;
                if (out->len == cap)
                    break;
                continue;
            }
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                out->closed = true;
                out->reset = n < 0 && errno == ECONNRESET;
                break;
            }
        }
    }
    out->ms = rc_now_ms() - t0;
    out->resp[out->len] = '\0';
    if (sscanf(out->resp, "HTTP/1.1 %d ", &out->status) != 1)
        out->status = 0;
    rc_close(fd);
}

bool hx_http_complete(const char *resp, size_t len)
{
    const char *end = strstr(resp, "\r\n\r\n");
    const char *cl = strstr(resp, "Content-Length: ");
    if (!end || !cl || cl > end)
        return false;
    size_t body = (size_t)strtoul(cl + 16, NULL, 10);
    return len == (size_t)(end + 4 - resp) + body;
}

int hx_http_answers(const char *resp, size_t len)
{
    int n = 0;
    for (size_t i = 0; i + 7 <= len; i++)
        if ((i == 0 || resp[i - 1] == '\n') && !memcmp(resp + i, "HTTP/1.", 7))
            n++;
    return n;
}

#define HX_STREAM_WINDOW (256u * 1024)

void hx_stream_start(struct hx_stream *st, struct rc_server *s, int mport, int nsubs, uint8_t tag,
                     uint32_t frames, size_t frame_len, uint32_t per_sec)
{
    assert_true(nsubs > 0 && nsubs <= HX_STREAM_MAX_SUBS);
    memset(st, 0, sizeof(*st));
    st->s = s;
    st->nsubs = nsubs;
    st->frames = frames;
    st->frame_len = frame_len;
    st->per_sec = per_sec;
    st->len = (size_t)frames * frame_len;
    st->pace = per_sec;
    st->lifted_us = INT64_MAX;
    st->data = malloc(st->len ? st->len : 1);
    st->scratch = malloc(1u << 20);
    size_t pairs = (size_t)nsubs * frames;
    st->lat_us = malloc((pairs > 0 ? pairs : 1) * sizeof(int32_t));
    assert_non_null(st->data);
    assert_non_null(st->scratch);
    assert_non_null(st->lat_us);
    for (size_t i = 0; i < pairs; i++)
        st->lat_us[i] = -1;
    for (uint32_t i = 0; i < frames; i++)
        hx_frame_line(st->data + (size_t)i * frame_len, frame_len, tag, i);
    double before = mport > 0 ? hx_scrape(s, mport, "ringcast_clients") : 0;
    size_t mark = rc_log_mark(s);
    for (int i = 0; i < nsubs; i++) {
        st->subs[i] = rc_connect_raw(s, 0);
        hx_check_init(&st->checks[i], false);
        st->checks[i].want[tag] = frames;
    }
    st->pub = rc_connect_raw(s, 0);
    if (mport > 0) {
        double want = before + nsubs + 1;
        double got = hx_wait_metric(s, mport, "ringcast_clients", want, RC_WAIT_MS);
        if (got != want)
            fail_msg("set-up: %.0f clients registered, want %.0f", got, want);
    } else {
        for (int i = 0; i < nsubs; i++)
            rc_wait_client_log(s, mark, rc_port_of(st->subs[i]), "connected.");
        rc_wait_client_log(s, mark, rc_port_of(st->pub), "connected.");
    }
    st->t0 = rc_now_ms();
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* When frame seq is due: its place in the schedule, or when the pace was lifted if earlier. */
static int64_t intended_us(const struct hx_stream *st, uint32_t seq)
{
    int64_t at = st->t0 * 1000;
    if (st->pace)
        at += (int64_t)seq * 1000000 / st->pace;
    return at < st->lifted_us ? at : st->lifted_us;
}

/* Records the latency of frames [from, to) at subscriber i, all complete at now. */
static void record_latency(struct hx_stream *st, int i, uint64_t from, uint64_t to, int64_t now)
{
    for (uint64_t k = from; k < to && k < st->frames; k++) {
        int64_t lat = now - intended_us(st, (uint32_t)k);
        lat = lat < 0 ? 0 : lat > INT32_MAX ? INT32_MAX : lat;
        st->lat_us[(size_t)i * st->frames + k] = (int32_t)lat;
    }
}

void hx_stream_step(struct hx_stream *st, int wait_ms)
{
    size_t due = st->len;
    int64_t wake_us = INT64_MAX; /* when the next frame falls due (paced) */
    if (st->per_sec) {
        int64_t since = now_us() - st->t0 * 1000;
        uint64_t n = (uint64_t)(since > 0 ? since : 0) * st->per_sec / 1000000 + 1;
        due = n < st->frames ? (size_t)n * st->frame_len : st->len;
        if (n < st->frames)
            wake_us = intended_us(st, (uint32_t)n);
    }
    if (st->until && due > st->until)
        due = st->until;
    /*
     * The publisher stays within HX_STREAM_WINDOW of the slowest subscriber: this one thread
     * reads them in turn, and on a slow (sanitizer) run they must not drift a --max-queue apart
     * and be judged against each other. A relay that stops delivering still stalls the stream.
     */
    uint64_t slowest = UINT64_MAX;
    for (int i = 0; i < st->nsubs; i++)
        if (st->checks[i].bytes < slowest)
            slowest = st->checks[i].bytes;
    if (due > slowest + HX_STREAM_WINDOW)
        due = (size_t)(slowest + HX_STREAM_WINDOW);
    struct pollfd p[HX_STREAM_MAX_SUBS + 1];
    for (int i = 0; i < st->nsubs; i++)
        p[i] = (struct pollfd){.fd = st->subs[i], .events = POLLIN};
    p[st->nsubs] = (struct pollfd){.fd = st->pub, .events = st->sent < due ? POLLOUT : 0};
    /* Up to wait_ms, but not past the next frame's due time (the pace must not lag the poll). */
    int64_t wait = (int64_t)(wait_ms > 0 ? wait_ms : 0) * 1000;
    if (wake_us != INT64_MAX && (!st->until || due < st->until)) {
        int64_t left = wake_us - now_us();
        wait = left < 0 ? 0 : left < wait ? left : wait;
    }
    struct timespec ts = {.tv_sec = wait / 1000000, .tv_nsec = (wait % 1000000) * 1000};
    ppoll(p, (nfds_t)st->nsubs + 1, &ts, NULL);
    /* Bounded: a few MiB per call, so the caller's offender gets its turn. */
    for (int k = 0; k < 8 && st->sent < due; k++) {
        size_t put = rc_send_some(st->pub, st->data + st->sent, due - st->sent);
        if (!put)
            break;
        st->sent += put;
    }
    for (int i = 0; i < st->nsubs; i++) {
        for (int k = 0; k < 8; k++) {
            ssize_t n = rc_recv_now(st->subs[i], st->scratch, 1u << 20);
            if (n < 0) {
                rc_dump(st->s);
                fail_msg("healthy subscriber %d was disconnected", i);
            }
            if (n == 0)
                break;
            uint64_t had = st->checks[i].frames;
            if (!hx_check_feed(&st->checks[i], st->scratch, (size_t)n))
                fail_msg("healthy subscriber %d: %s", i, st->checks[i].err);
            record_latency(st, i, had, st->checks[i].frames, now_us());
        }
    }
    int64_t now = rc_now_ms();
    if (now >= st->next_alive) {
        hx_expect_alive(st->s, "beside the offender");
        st->next_alive = now + 200;
    }
}

bool hx_stream_complete(const struct hx_stream *st)
{
    for (int i = 0; i < st->nsubs; i++)
        if (!hx_check_complete(&st->checks[i]))
            return false;
    return true;
}

/* Every healthy subscriber of @st has the whole stream, or the test fails saying how far it got
 * within @timeout_ms (@after says from when). */
static void expect_whole_stream(const struct hx_stream *st, int timeout_ms, const char *after)
{
    for (int i = 0; i < st->nsubs; i++) {
        if (!hx_check_complete(&st->checks[i])) {
            char d[512];
            hx_check_describe(&st->checks[i], d, sizeof(d));
            rc_dump(st->s);
            fail_msg("healthy subscriber %d did not get the whole stream within %d ms%s "
                     "(publisher sent %zu of %zu bytes): %s",
                     i, timeout_ms, after, st->sent, st->len, d);
        }
    }
}

void hx_stream_finish(struct hx_stream *st, int timeout_ms)
{
    if (st->per_sec && st->lifted_us == INT64_MAX)
        st->lifted_us = now_us();
    st->per_sec = 0;
    st->until = 0;
    int64_t deadline = rc_now_ms() + timeout_ms;
    while (!hx_stream_complete(st) && rc_now_ms() < deadline)
        hx_stream_step(st, 10);
    expect_whole_stream(st, timeout_ms, "");
}

void hx_stream_run_out(struct hx_stream *st, int timeout_ms)
{
    st->until = 0;
    int64_t rest_ms = 0;
    if (st->per_sec)
        rest_ms = st->t0 + (int64_t)st->frames * 1000 / st->per_sec - rc_now_ms();
    int64_t deadline = rc_now_ms() + (rest_ms > 0 ? rest_ms : 0) + timeout_ms;
    /* A round takes at least a frame's read or 10 ms of waiting: far above any real run. */
    for (long round = 0; round < 100000000L && !hx_stream_complete(st) && rc_now_ms() < deadline;
         round++)
        hx_stream_step(st, 10);
    expect_whole_stream(st, timeout_ms, " of its schedule's end");
}

void hx_stream_close(struct hx_stream *st)
{
    rc_close(st->pub);
    for (int i = 0; i < st->nsubs; i++) {
        rc_close(st->subs[i]);
        hx_check_free(&st->checks[i]);
    }
    free(st->data);
    free(st->scratch);
    free(st->lat_us);
    st->data = st->scratch = NULL;
    st->lat_us = NULL;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0 < q <= 1) of n sorted samples (as hostage.c computes it). */
static int64_t rank_of(const int32_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return v[rank - 1];
}

void hx_stream_latency(const struct hx_stream *st, struct hx_latency *out)
{
    memset(out, 0, sizeof(*out));
    size_t all = (size_t)st->nsubs * st->frames;
    int32_t *v = malloc((all ? all : 1) * sizeof(int32_t));
    assert_non_null(v);
    for (size_t i = 0; i < all; i++) {
        if (st->lat_us[i] >= 0)
            v[out->samples++] = st->lat_us[i];
        else
            out->missing++;
    }
    qsort(v, out->samples, sizeof(v[0]), cmp_i32);
    out->p50_us = rank_of(v, out->samples, 0.50);
    out->p99_us = rank_of(v, out->samples, 0.99);
    out->max_us = out->samples ? v[out->samples - 1] : 0;
    free(v);
}

int64_t hx_stream_p99_us(const struct hx_stream *st, const char *what)
{
    struct hx_latency l;
    hx_stream_latency(st, &l);
    print_message("%s: healthy delivery latency p50 %.2f ms, p99 %.2f ms, max %.2f ms (%zu frames "
                  "x %d subscribers at %u/s%s)\n",
                  what, (double)l.p50_us / 1e3, (double)l.p99_us / 1e3, (double)l.max_us / 1e3,
                  (size_t)st->frames, st->nsubs, st->pace, l.missing ? ", some missing" : "");
    if (l.missing)
        fail_msg("%s: %zu (subscriber, frame) pairs were never delivered", what, l.missing);
    return l.p99_us;
}

/* ------------------------------------------------------------------ with and without */

void hx_stop(struct rc_server *s, const char *what)
{
    rc_signal(s, SIGTERM);
    int st = rc_wait_exit(s, RC_WAIT_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("%s: the server did not exit 0 within %d ms of SIGTERM (wait status 0x%x)", what,
                 RC_WAIT_MS, st);
    }
}

int64_t hx_stream_alone(struct rc_server *s, int mport, bool quiet, int nsubs, uint8_t tag,
                        uint32_t frames, size_t frame_len, uint32_t per_sec)
{
    int idle = rc_fd_count(s);
    assert_true(idle > 0);
    struct hx_stream st;
    hx_stream_start(&st, s, quiet ? mport : 0, nsubs, tag, frames, frame_len, per_sec);
    hx_stream_run_out(&st, RC_IO_MS);
    int64_t p99 = hx_stream_p99_us(&st, "without the offender");
    hx_expect_metrics_consistent(s, mport, nsubs + 1);
    hx_stream_close(&st);
    if (hx_wait_metric(s, mport, "ringcast_clients", 0, RC_WAIT_MS) != 0)
        fail_msg("without the offender: clients left after closing every client");
    hx_expect_fds(s, idle, "without the offender, every client gone");
    hx_stop(s, "without the offender");
    return p99;
}

void hx_compare_p99(const char *name, int64_t (*run)(void *arg, bool offender), void *arg)
{
    char summary[1024] = "";
    size_t len = 0;
    int64_t best = INT64_MAX; /* the lowest baseline p99 so far: load only ever raises it */
    for (int attempt = 1; attempt <= HG_ATTEMPTS; attempt++) {
        int64_t base = run(arg, false);
        best = base < best ? base : best;
        int64_t bound = HG_FACTOR * best > HG_RATE_FLOOR_MS * 1000LL ? HG_FACTOR * best
                                                                     : HG_RATE_FLOOR_MS * 1000LL;
        int64_t with = run(arg, true);
        print_message("%s, attempt %d: healthy p99 %.2f ms with it, %.2f ms without (lowest "
                      "%.2f ms); bound max(%d ms, %d x %.2f ms) = %.2f ms\n",
                      name, attempt, (double)with / 1e3, (double)base / 1e3, (double)best / 1e3,
                      HG_RATE_FLOOR_MS, HG_FACTOR, (double)best / 1e3, (double)bound / 1e3);
        if (with <= bound)
            return;
        if (len < sizeof(summary))
            len += (size_t)snprintf(summary + len, sizeof(summary) - len,
                                    "; attempt %d: p99 %.2f ms with it against %.2f ms without "
                                    "(lowest %.2f ms), bound max(%d ms, %d x %.2f ms) = %.2f ms",
                                    attempt, (double)with / 1e3, (double)base / 1e3,
                                    (double)best / 1e3, HG_RATE_FLOOR_MS, HG_FACTOR,
                                    (double)best / 1e3, (double)bound / 1e3);
    }
    fail_msg("with %s, the healthy subscribers' p99 delivery latency is over its bound in every "
             "attempt%s: the offender holds them hostage",
             name, summary);
}
