/*
 * The metrics endpoint (--metrics): a live scrape checked by the real `promtool check metrics`,
 * counters compared with the traffic the test generated, /healthz through a drain, the HTTP error
 * answers, the connection limit and deadline, and the relay running on while metric clients are
 * stuck.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define RESP_CAP (256u * 1024)
#define MAX_HTTP_CONNS 16 /* the server's bound */
#define DEADLINE_MS 10000 /* the server's per-connection deadline */

/* ------------------------------------------------------------------ helpers */

/* Starts a server with --metrics on a free loopback port; returns the metrics port. */
static struct rc_server *start_with_metrics(int *mport, const char *const *extra)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = "--metrics";
    argv[n++] = "127.0.0.1:0";
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    struct rc_opts o = {.argv = argv};
    struct rc_server *s = rc_start_ex(&o);
    char line[256];
    if (!rc_log_wait(s, 0, "Metrics at: http://", RC_WAIT_MS) ||
        !rc_log_find(s, 0, "Metrics at: http://", line, sizeof(line)))
        fail_msg("no \"Metrics at:\" line");
    const char *p = strstr(line, "http://127.0.0.1:");
    if (!p)
        fail_msg("unexpected metrics line \"%s\"", line);
    *mport = atoi(p + strlen("http://127.0.0.1:"));
    assert_true(*mport > 0 && *mport < 65536);
    return s;
}

/* Connects to the metrics port (tracked by the harness, closed at teardown). */
static int mconnect(struct rc_server *s, int mport)
{
    struct rc_server m = *s;
    m.port = mport;
    return rc_connect_addr(&m, "127.0.0.1", 0);
}

struct http_resp {
    int status; /* 0 when no status line came */
    char *head; /* the whole response, NUL-terminated */
    const char *body;
    size_t len; /* of the whole response */
};

static void resp_free(struct http_resp *r)
{
    free(r->head);
    memset(r, 0, sizeof(*r));
}

/* Reads a response until the server closes (each connection carries one request). */
static struct http_resp read_resp(int fd)
{
    struct http_resp r = {0};
    r.head = calloc(1, RESP_CAP + 1);
    size_t n = rc_recv_until_eof(fd, r.head, RESP_CAP, RC_IO_MS);
    if (n == (size_t)-1)
        fail_msg("the metrics endpoint did not answer and close within %d ms", RC_IO_MS);
    r.len = n;
    r.head[n] = '\0';
    sscanf(r.head, "HTTP/1.1 %d ", &r.status);
    const char *b = strstr(r.head, "\r\n\r\n");
    r.body = b ? b + 4 : r.head + n;
    return r;
}

/* Sends a raw request (as much as the server takes) and reads the answer. */
static struct http_resp http_raw(struct rc_server *s, int mport, const char *req, size_t len)
{
    int fd = mconnect(s, mport);
    rc_send_lenient(fd, req, len, RC_IO_MS);
    struct http_resp r = read_resp(fd);
    rc_close(fd);
    return r;
}

static struct http_resp http_get(struct rc_server *s, int mport, const char *method,
                                 const char *path)
{
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n", method, path);
    return http_raw(s, mport, req, (size_t)n);
}

static struct http_resp scrape(struct rc_server *s, int mport)
{
    struct http_resp r = http_get(s, mport, "GET", "/metrics");
    if (r.status != 200)
        fail_msg("GET /metrics answered %d:\n%s", r.status, r.head);
    return r;
}

/* The value of the sample named exactly @name (with its labels, if any); fails if absent. */
static double metric(const struct http_resp *r, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = r->body; p && *p;) {
        if (!strncmp(p, name, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    fail_msg("no sample %s in the scrape:\n%s", name, r->body);
    return -1;
}

/* Scrapes until @name equals @want (counters settle once send completions are processed). */
static struct http_resp wait_metric(struct rc_server *s, int mport, const char *name, double want)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    for (;;) {
        struct http_resp r = scrape(s, mport);
        double v = metric(&r, name);
        if (v == want)
            return r;
        if (v > want || rc_now_ms() > deadline)
            fail_msg("%s is %g, want %g:\n%s", name, v, want, r.body);
        resp_free(&r);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void expect_metric(const struct http_resp *r, const char *name, double want)
{
    double v = metric(r, name);
    if (v != want)
        fail_msg("%s is %g, want %g:\n%s", name, v, want, r->body);
}

static void expect_status(struct http_resp *r, int want, const char *what)
{
    if (r->status != want)
        fail_msg("%s: status %d, want %d; response:\n%s", what, r->status, want, r->head);
}

/* Relays @frames lines from pub to every reader and checks what they got. */
static void relay_sized(int pub, const int *readers, int nreaders, int frames, size_t len,
                        const char *tag)
{
    size_t total = len * (size_t)frames;
    char *data = malloc(total);
    for (int i = 0; i < frames; i++)
        rc_make_line(data + (size_t)i * len, len, tag, (uint32_t)i);
    struct rc_flow f[8] = {{.fd = pub, .out = (const uint8_t *)data, .out_len = total}};
    assert_true(nreaders < 8);
    for (int i = 0; i < nreaders; i++)
        f[i + 1] = (struct rc_flow){.fd = readers[i], .in = malloc(total), .in_len = total};
    if (!rc_transfer(f, (size_t)nreaders + 1, RC_IO_MS))
        fail_msg("relaying %d frames did not complete within %d ms", frames, RC_IO_MS);
    for (int i = 0; i < nreaders; i++) {
        assert_memory_equal(f[i + 1].in, data, total);
        free(f[i + 1].in);
    }
    free(data);
}

static void relay_lines(int pub, const int *readers, int nreaders, int frames, const char *tag)
{
    relay_sized(pub, readers, nreaders, frames, 100, tag);
}

/* ------------------------------------------------------------------ tests */

/* A live scrape, with traffic behind it and three listeners, passes `promtool check metrics`
 * without a complaint. */
static void test_metrics_promtool(void **state)
{
    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        fprintf(stderr, "promtool not found (Debian package prometheus): skipped\n");
        skip();
    }
    int mport;
    /* Two more listeners, so that the families by listener and role have several samples. */
    static const char *const extra[] = {"--listen", "127.0.0.1:0,role=sub", "--listen",
                                        "[::1]:0,role=pub,noauth", NULL};
    static const char *const extra4[] = {"--listen", "127.0.0.1:0,role=sub", NULL};
    struct rc_server *s = start_with_metrics(&mport, rc_have_ipv6() ? extra : extra4);
    int a = rc_connect(s), b = rc_connect(s);
    relay_lines(a, &b, 1, 50, "p");
    struct http_resp r = scrape(s, mport);
    if (!strstr(r.head, "Content-Type: text/plain; version=0.0.4"))
        fail_msg("not the text exposition format 0.0.4:\n%s", r.head);

    static const char *const families[] = {"build_info",
                                           "uptime_seconds",
                                           "clients",
                                           "connections_accepted_total",
                                           "connections_rejected_total",
                                           "frames_received_total",
                                           "bytes_received_total",
                                           "frames_delivered_total",
                                           "bytes_delivered_total",
                                           "frames_dropped_total",
                                           "disconnects_total",
                                           "protocol_errors_total",
                                           "sends_total",
                                           "zerocopy_sends_total",
                                           "zerocopy_copied_total",
                                           "send_batch_frames",
                                           "pending_output_bytes",
                                           "max_client_backlog_bytes",
                                           "clients_waiting_writable",
                                           "recv_buffers_exhausted_total",
                                           "listener_clients",
                                           "listener_connections_accepted_total",
                                           "protocol_violations_total"};
    for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++) {
        char help[128], type[128];
        snprintf(help, sizeof(help), "# HELP ringcast_%s ", families[i]);
        snprintf(type, sizeof(type), "# TYPE ringcast_%s ", families[i]);
        if (!strstr(r.body, help) || !strstr(r.body, type))
            fail_msg("no HELP and TYPE for ringcast_%s:\n%s", families[i], r.body);
    }
    static const char *const reasons[] = {
        "eof", "reset", "slow_consumer", "frame_too_long", "shutdown", "protocol_violation"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(*reasons); i++) {
        char name[128];
        snprintf(name, sizeof(name), "ringcast_disconnects_total{reason=\"%s\"}", reasons[i]);
        metric(&r, name);
    }
    metric(&r, "ringcast_connections_rejected_total{reason=\"max_clients\"}");
    metric(&r, "ringcast_connections_rejected_total{reason=\"emfile\"}");
    metric(&r, "ringcast_connections_rejected_total{reason=\"per_ip\"}");
    metric(&r, "ringcast_send_batch_frames_bucket{le=\"+Inf\"}");
    metric(&r, "ringcast_protocol_violations_total{reason=\"sub_sent\"}");
    if (!strstr(r.body, "ringcast_build_info{version=\"" RINGCAST_VERSION "\""))
        fail_msg("ringcast_build_info lacks version " RINGCAST_VERSION ":\n%s", r.body);

    char path[] = "/tmp/ringcast-scrape-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, r.body, strlen(r.body)), (ssize_t)strlen(r.body));
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    if (st != 0 || n != 0)
        fail_msg("promtool check metrics (status 0x%x) says:\n%s\non:\n%s", st, out, r.body);
    resp_free(&r);
}

/* 3 clients, 10 frames from one: 10 received, 20 delivered; then closes by reason. */
static void test_metrics_counters_match_traffic(void **state)
{
    (void)state;
    int mport;
    struct rc_server *s = start_with_metrics(&mport, NULL);
    int fds[3];
    rc_connect_many(s, fds, 3);
    struct http_resp r = scrape(s, mport);
    expect_metric(&r, "ringcast_clients", 3);
    expect_metric(&r, "ringcast_connections_accepted_total", 3);
    /* By listener and role: the default listener, with its real port. */
    char name[160];
    snprintf(name, sizeof(name),
             "ringcast_listener_clients{listener=\"127.0.0.1:%d\",role=\"both\"}", s->port);
    expect_metric(&r, name, 3);
    snprintf(
        name, sizeof(name),
        "ringcast_listener_connections_accepted_total{listener=\"127.0.0.1:%d\",role=\"both\"}",
        s->port);
    expect_metric(&r, name, 3);
    expect_metric(&r, "ringcast_frames_received_total", 0);
    resp_free(&r);

    relay_lines(fds[0], fds + 1, 2, 10, "c");
    r = wait_metric(s, mport, "ringcast_frames_delivered_total", 20);
    expect_metric(&r, "ringcast_frames_received_total", 10);
    expect_metric(&r, "ringcast_bytes_received_total", 10 * 100);
    expect_metric(&r, "ringcast_bytes_delivered_total", 20 * 100);
    expect_metric(&r, "ringcast_clients", 3);
    expect_metric(&r, "ringcast_frames_dropped_total", 0);
    expect_metric(&r, "ringcast_protocol_errors_total", 0);
    expect_metric(&r, "ringcast_pending_output_bytes", 0);
    expect_metric(&r, "ringcast_max_client_backlog_bytes", 0);
    /* Every completed send is in the histogram, and it carried the 20 frames. */
    double sends = metric(&r, "ringcast_send_batch_frames_count");
    assert_true(sends >= 2 && sends <= 20);
    expect_metric(&r, "ringcast_send_batch_frames_sum", 20);
    expect_metric(&r, "ringcast_send_batch_frames_bucket{le=\"+Inf\"}", sends);
    assert_true(metric(&r, "ringcast_sends_total") >= sends);
    resp_free(&r);

    /* A normal close and a reset, each counted under its reason. */
    size_t mark = rc_log_mark(s);
    int p1 = rc_close(fds[1]);
    int p2 = rc_reset(fds[2]);
    rc_wait_client_log(s, mark, p1, "disconnected");
    rc_wait_client_log(s, mark, p2, "disconnected");
    r = wait_metric(s, mport, "ringcast_clients", 1);
    expect_metric(&r, "ringcast_disconnects_total{reason=\"eof\"}", 1);
    expect_metric(&r, "ringcast_disconnects_total{reason=\"reset\"}", 1);
    expect_metric(&r, "ringcast_disconnects_total{reason=\"slow_consumer\"}", 0);
    expect_metric(&r, "ringcast_disconnects_total{reason=\"shutdown\"}", 0);
    expect_metric(&r, "ringcast_frames_delivered_total", 20);
    resp_free(&r);
}

/* /healthz: 200 "ok" while serving, 503 "draining" from SIGTERM until the drain ends. */
static void test_metrics_healthz_through_drain(void **state)
{
    (void)state;
    static const char *const extra[] = {"--drain-timeout", "30", NULL};
    int mport;
    struct rc_server *s = start_with_metrics(&mport, extra);
    struct http_resp r = http_get(s, mport, "GET", "/healthz");
    expect_status(&r, 200, "GET /healthz while serving");
    assert_string_equal(r.body, "ok\n");
    resp_free(&r);

    /* A stuck reader (small receive buffer, reads nothing) keeps the drain going. */
    int pub = rc_connect(s), fast = rc_connect(s), stuck = rc_connect_buf(s, 4096);
    relay_sized(pub, &fast, 1, 2048, 1024, "d"); /* 2 MiB: more than the stuck socket holds */
    size_t mark = rc_log_mark(s);
    rc_signal(s, SIGTERM);
    if (!rc_log_wait(s, mark, "Shutting down", RC_WAIT_MS))
        fail_msg("no \"Shutting down\" line after SIGTERM");
    assert_true(rc_alive(s));
    r = http_get(s, mport, "GET", "/healthz");
    expect_status(&r, 503, "GET /healthz while draining");
    assert_string_equal(r.body, "draining\n");
    resp_free(&r);
    /* Metrics are still served during the drain. */
    r = scrape(s, mport);
    assert_true(metric(&r, "ringcast_clients") >= 1); /* the stuck reader */
    resp_free(&r);

    /* The stuck reader leaves: the drain is over, the server exits 0. */
    rc_reset(stuck);
    int st = rc_wait_exit(s, RC_WAIT_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("the server ended with status 0x%x, want exit 0", st);
    }
}

/* 404, 405, 400 on garbage and on headers over 8 KiB; HEAD gets headers only. */
static void test_metrics_http_errors(void **state)
{
    (void)state;
    int mport;
    struct rc_server *s = start_with_metrics(&mport, NULL);

    struct http_resp r = http_get(s, mport, "GET", "/nope");
    expect_status(&r, 404, "GET /nope");
    resp_free(&r);
    r = http_get(s, mport, "GET", "/metricsx");
    expect_status(&r, 404, "GET /metricsx");
    resp_free(&r);
    r = http_get(s, mport, "POST", "/metrics");
    expect_status(&r, 405, "POST /metrics");
    if (!strstr(r.head, "\r\nAllow: GET, HEAD\r\n"))
        fail_msg("405 without Allow: GET, HEAD:\n%s", r.head);
    resp_free(&r);
    r = http_get(s, mport, "DELETE", "/healthz");
    expect_status(&r, 405, "DELETE /healthz");
    resp_free(&r);
    r = http_get(s, mport, "HEAD", "/healthz");
    expect_status(&r, 200, "HEAD /healthz");
    assert_string_equal(r.body, "");
    resp_free(&r);
    r = http_get(s, mport, "GET", "/metrics?name[]=x");
    expect_status(&r, 200, "GET /metrics?query");
    resp_free(&r);

    static const char garbage[] = "\x01\x02 this is not HTTP \xff\r\n\r\n";
    r = http_raw(s, mport, garbage, sizeof(garbage) - 1);
    expect_status(&r, 400, "garbage");
    resp_free(&r);
    static const char bad_version[] = "GET /metrics HTTP/9.Z\r\n\r\n";
    r = http_raw(s, mport, bad_version, sizeof(bad_version) - 1);
    expect_status(&r, 400, "a malformed request line");
    resp_free(&r);

    /* 9 KiB of headers in one header, then in many small ones. */
    size_t cap = 16384;
    char *big = malloc(cap);
    int n = snprintf(big, cap, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 9 * 1024);
    n += 9 * 1024;
    n += snprintf(big + n, cap - (size_t)n, "\r\n\r\n");
    r = http_raw(s, mport, big, (size_t)n);
    expect_status(&r, 400, "a 9 KiB header");
    resp_free(&r);
    n = snprintf(big, cap, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 300; i++)
        n += snprintf(big + n, cap - (size_t)n, "X-Header-%03d: %024d\r\n", i, i);
    n += snprintf(big + n, cap - (size_t)n, "\r\n");
    r = http_raw(s, mport, big, (size_t)n);
    expect_status(&r, 400, "300 headers, over 8 KiB together");
    resp_free(&r);
    /* Just under the limit is fine. */
    n = snprintf(big, cap, "GET /healthz HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'b', 7 * 1024);
    n += 7 * 1024;
    n += snprintf(big + n, cap - (size_t)n, "\r\n\r\n");
    r = http_raw(s, mport, big, (size_t)n);
    expect_status(&r, 200, "7 KiB of headers");
    resp_free(&r);
    free(big);

    /* None of it disturbed the relay. */
    int a = rc_connect(s), b = rc_connect(s);
    relay_lines(a, &b, 1, 10, "e");
}

/* 16 metric connections at once; the 17th is closed at once; a freed slot is usable again. */
static void test_metrics_connection_limit(void **state)
{
    (void)state;
    int mport;
    struct rc_server *s = start_with_metrics(&mport, NULL);
    int base = rc_fd_count(s);
    assert_true(base > 0);
    int64_t t0 = rc_now_ms();
    int idle[MAX_HTTP_CONNS];
    for (int i = 0; i < MAX_HTTP_CONNS; i++)
        idle[i] = mconnect(s, mport);
    int got = rc_wait_fd_count(s, base + MAX_HTTP_CONNS, RC_WAIT_MS);
    if (got != base + MAX_HTTP_CONNS)
        fail_msg("the server holds %d descriptors, want %d + %d metric connections", got, base,
                 MAX_HTTP_CONNS);

    int64_t t1 = rc_now_ms();
    int extra = mconnect(s, mport);
    rc_expect_closed(extra);
    int64_t took = rc_now_ms() - t1;
    /* "At once": long before the 10 s deadline would have closed it. */
    if (took > DEADLINE_MS / 2)
        fail_msg("the 17th metric connection was closed after %lld ms", (long long)took);
    /* And the 16 were all still open then (not freed by their deadline meanwhile). */
    if (rc_now_ms() - t0 >= DEADLINE_MS)
        fail_msg("the check took longer than the deadline: inconclusive on this machine");
    for (int i = 0; i < MAX_HTTP_CONNS; i++)
        assert_int_equal(rc_recv_now(idle[i], (char[1]){0}, 1), 0);

    /* One leaves: its slot serves the next request. */
    rc_close(idle[0]);
    got = rc_wait_fd_count(s, base + MAX_HTTP_CONNS - 1, RC_WAIT_MS);
    assert_int_equal(got, base + MAX_HTTP_CONNS - 1);
    struct http_resp r = http_get(s, mport, "GET", "/healthz");
    expect_status(&r, 200, "GET /healthz in a freed slot");
    resp_free(&r);
    for (int i = 1; i < MAX_HTTP_CONNS; i++)
        rc_close(idle[i]);
    assert_int_equal(rc_wait_fd_count(s, base, RC_WAIT_MS), base);
}

/*
 * Metric clients that send nothing, half a request, or never read are closed after the deadline;
 * meanwhile the relay relays and other scrapes are answered.
 */
static void test_metrics_stuck_clients(void **state)
{
    (void)state;
    int mport;
    struct rc_server *s = start_with_metrics(&mport, NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);

    int64_t t0 = rc_now_ms();
    int silent = mconnect(s, mport);
    int partial = mconnect(s, mport);
    rc_send_str(partial, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");

    int readers[2] = {b, c};
    int rounds = 0;
    for (; rounds < 5; rounds++) {
        relay_lines(a, readers, 2, 500, "s");
        struct http_resp r = scrape(s, mport);
        resp_free(&r);
    }
    /* The stuck ones are still open: the relay did not wait for them. */
    assert_int_equal(rc_recv_now(silent, (char[1]){0}, 1), 0);
    assert_int_equal(rc_recv_now(partial, (char[1]){0}, 1), 0);
    if (rc_now_ms() - t0 >= DEADLINE_MS)
        fail_msg("relaying took longer than the metrics deadline: inconclusive");
    struct http_resp r = wait_metric(s, mport, "ringcast_frames_delivered_total", rounds * 1000);
    resp_free(&r);

    /* Both are closed by the deadline, with nothing sent, and not before it. */
    int fds[2] = {silent, partial};
    for (int i = 0; i < 2; i++) {
        size_t n = rc_recv_until_eof(fds[i], NULL, 0, DEADLINE_MS + RC_WAIT_MS);
        int64_t when = rc_now_ms() - t0;
        if (n == (size_t)-1)
            fail_msg("a stuck metric connection was not closed within %d ms",
                     DEADLINE_MS + RC_WAIT_MS);
        assert_int_equal(n, 0);
        if (when < DEADLINE_MS - 500)
            fail_msg("a stuck metric connection was closed after %lld ms, before the deadline",
                     (long long)when);
        if (when > DEADLINE_MS + RC_WAIT_MS)
            fail_msg("closed only after %lld ms", (long long)when);
    }
    relay_lines(a, readers, 2, 10, "t");
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_metrics_promtool, rc_teardown),
        cmocka_unit_test_teardown(test_metrics_counters_match_traffic, rc_teardown),
        cmocka_unit_test_teardown(test_metrics_healthz_through_drain, rc_teardown),
        cmocka_unit_test_teardown(test_metrics_http_errors, rc_teardown),
        cmocka_unit_test_teardown(test_metrics_connection_limit, rc_teardown),
        cmocka_unit_test_teardown(test_metrics_stuck_clients, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
