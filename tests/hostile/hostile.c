/* Helpers for the bug-regression tests: see hostile.h. */
#include "hostile.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------ the server */

struct rc_server *hx_start_metrics(int *mport, const char *arg, ...)
{
    const char *argv[64];
    size_t n = 0;
    argv[n++] = "--metrics";
    argv[n++] = "127.0.0.1:0";
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    struct rc_opts o = {.argv = argv};
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
