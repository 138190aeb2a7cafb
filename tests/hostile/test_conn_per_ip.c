/*
 * --max-clients-per-ip (roles-and-tokens issue): a peer address past its limit is closed at once,
 * before it is registered, while other addresses and the clients already in carry on.
 *
 * Loopback holds all of 127/8, so one test host is several peers: client sockets are bound to
 * 127.0.0.1 or 127.0.0.2 before they connect.
 *
 * - ipv4: with --max-clients-per-ip 2, the third connection from 127.0.0.1 is closed with no data
 *   and never logged as connected, while 127.0.0.2 still gets its two (and its third is closed);
 *   connections_rejected_total{reason="per_ip"} counts exactly the refusals, none of them as
 *   accepted; the first two clients relay frames to each other and to the others; once one of
 *   them has gone (its descriptor closed in the relay), a new connection from 127.0.0.1 is
 *   accepted. Then a burst of BURST connections from 127.0.0.1 while frames flow: each closed at
 *   once with no data, counted exactly, and the refusals logged at most once a second (lines at
 *   least 0.9 s apart by their --log-timestamps times, whose counts add up to the refusals).
 *   At the end the descriptor count is back to idle and the counts per address are back to 0
 *   (each address gets two again, and a third is refused again).
 * - and_max_clients: with --max-clients 3 too, a connection past both limits counts under per_ip
 *   and one past --max-clients only under max_clients; the lines account for both.
 * - ipv6: the same on a relay listening on ::1 (skipped when IPv6 is unavailable).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "hostile.h"

#define LIMIT 2
#define BURST 200     /* refused connections in a row */
#define CLOSE_MS 2000 /* "closed at once": with ASan on a loaded box, still far below this */
#define GAP_MS 900    /* refusal lines at least this far apart (1 s; the clocks differ a little) */

#define M_PER_IP "ringcast_connections_rejected_total{reason=\"per_ip\"}"
#define M_MAX_CLIENTS "ringcast_connections_rejected_total{reason=\"max_clients\"}"
#define M_EMFILE "ringcast_connections_rejected_total{reason=\"emfile\"}"
#define M_ACCEPTED "ringcast_connections_accepted_total"

static int connect_from(struct rc_server *s, const char *local)
{
    return rc_connect_opts(s, s->host, &(struct rc_sockopts){.local = local});
}

/* Connects from @local and waits until the relay has registered it. */
static int join_from(struct rc_server *s, const char *local)
{
    size_t mark = rc_log_mark(s);
    int fd = connect_from(s, local);
    rc_wait_client_log(s, mark, rc_port_of(fd), "connected.");
    return fd;
}

/* Connects from @local and expects the relay to close it without a byte. */
static void refused_from(struct rc_server *s, const char *local)
{
    int fd = connect_from(s, local);
    int64_t t0 = rc_now_ms();
    rc_expect_closed(fd);
    int64_t took = rc_now_ms() - t0;
    if (took > CLOSE_MS)
        fail_msg("a connection past --max-clients-per-ip was closed only after %lld ms",
                 (long long)took);
    rc_close(fd);
}

/*
 * No refused connection was ever registered: the log has exactly @joined "connected." lines. Call
 * after waiting for the last client's line: the log is in order, so a refused one's line would be
 * in already. (Ports are no key here: a refused connection's port is free again at once.)
 */
static void expect_connected_lines(struct rc_server *s, size_t joined)
{
    size_t n = rc_log_count(s, 0, " connected.");
    if (n != joined)
        fail_msg("%zu \"connected.\" lines for %zu clients let in", n, joined);
}

/* @from sends a line; each of @to (n of them) gets exactly it. */
static void relays(int from, const int *to, int n, const char *line)
{
    rc_send_str(from, line);
    for (int i = 0; i < n; i++)
        rc_expect_str(to[i], line);
}

static void expect_counters(struct rc_server *s, int mport, double per_ip, double max_clients,
                            double accepted, double clients)
{
    double got_per_ip = hx_scrape(s, mport, M_PER_IP), got_acc = hx_scrape(s, mport, M_ACCEPTED);
    if (got_per_ip != per_ip || got_acc != accepted)
        fail_msg("metrics: rejected{per_ip} %.0f (want %.0f), accepted %.0f (want %.0f)",
                 got_per_ip, per_ip, got_acc, accepted);
    assert_true(hx_scrape(s, mport, M_MAX_CLIENTS) == max_clients);
    assert_true(hx_scrape(s, mport, M_EMFILE) == 0);
    hx_expect_metrics_consistent(s, mport, clients);
}

/*
 * @n connections from @local in bursts of 10 while @pub keeps sending lines to the @nsubs others
 * (@subs): each must be closed by the relay with no data (data would mean it was registered and
 * got the stream).
 */
static void refuse_burst(struct rc_server *s, const char *local, int n, int pub, const int *subs,
                         int nsubs)
{
    int fds[BURST];
    int64_t opened[BURST], took[BURST];
    int made = 0, done = 0;
    uint32_t seq = 0;
    char buf[256];
    assert_true(n <= BURST);
    int64_t deadline = rc_now_ms() + RC_IO_MS;
    while (done < n && rc_now_ms() < deadline) {
        for (int k = 0; k < 10 && made < n; k++, made++) {
            fds[made] = connect_from(s, local);
            opened[made] = rc_now_ms();
            took[made] = -1;
        }
        char line[32];
        snprintf(line, sizeof(line), "burst %08u\n", seq++);
        relays(pub, subs, nsubs, line);
        for (int i = 0; i < made; i++) {
            if (took[i] >= 0)
                continue;
            ssize_t got = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
            if (got > 0)
                fail_msg("connection %d past --max-clients-per-ip received %zd bytes", i, got);
            if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                took[i] = rc_now_ms() - opened[i];
                rc_close(fds[i]);
                done++;
            }
        }
    }
    int64_t worst = 0;
    for (int i = 0; i < made; i++) {
        if (took[i] < 0)
            fail_msg("connection %d past --max-clients-per-ip was not closed within %d ms", i,
                     RC_IO_MS);
        if (took[i] > worst)
            worst = took[i];
    }
    print_message("%d connections from %s past the limit closed, the slowest after %lld ms\n", n,
                  local ? local : s->host, (long long)worst);
    if (worst > CLOSE_MS)
        fail_msg("a connection past --max-clients-per-ip was closed only after %lld ms (limit %d)",
                 (long long)worst, CLOSE_MS);
}

/* "2026-11-29T22:30:01.123Z " at the start of @line, in ms since the epoch; -1 if absent. */
static int64_t stamp_ms(const char *line)
{
    struct tm tm;
    int ms;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/*
 * The refusal lines on stderr ("closed N new connection(s): " then "--max-clients (C) reached",
 * "--max-clients-per-ip (2) reached, the last from ADDR", or the first, "; M more: " and the
 * second): the refusals they count under each limit, their number, and the smallest gap between
 * consecutive ones (INT64_MAX with fewer than two).
 */
struct refusal_lines {
    uint64_t per_ip, max_clients;
    int lines;
    int64_t min_gap_ms;
};

/* "--max-clients-per-ip (2) reached, the last from WHO..." at @p. */
static bool names(const char *p, const char *who)
{
    char want[96];
    snprintf(want, sizeof(want), "--max-clients-per-ip (%d) reached, the last from %s", LIMIT, who);
    return !strncmp(p, want, strlen(want));
}

static void scan_refusals(struct rc_server *s, const char *who, struct refusal_lines *out)
{
    static const char closed[] = "warning: closed ", conns[] = " new connection(s): ";
    char *text = rc_err_text(s);
    memset(out, 0, sizeof(*out));
    out->min_gap_ms = INT64_MAX;
    int64_t prev = -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *p = strstr(line, closed);
        if (!p || !strstr(line, conns))
            continue;
        char *end;
        uint64_t n = strtoull(p + strlen(closed), &end, 10);
        int64_t at = stamp_ms(line);
        bool ok = at >= 0 && !strncmp(end, conns, strlen(conns));
        p = end + strlen(conns);
        if (ok && !strncmp(p, "--max-clients (", 15)) {
            out->max_clients += n;
            const char *more = strstr(p, "; ");
            if (more) {
                uint64_t m = strtoull(more + 2, &end, 10);
                ok = !strncmp(end, " more: ", 7) && names(end + 7, who);
                out->per_ip += m;
            }
        } else if (ok) {
            ok = names(p, who);
            out->per_ip += n;
        }
        if (!ok)
            fail_msg("unexpected refusal line \"%s\" (expected one naming %s)", line, who);
        out->lines++;
        if (prev >= 0 && at - prev < out->min_gap_ms)
            out->min_gap_ms = at - prev;
        prev = at;
    }
    free(text);
}

/* Waits (bounded) until the refusal lines account for every refusal, then checks their rate. */
static void expect_refusals_logged(struct rc_server *s, const char *who, uint64_t per_ip,
                                   uint64_t max_clients)
{
    struct refusal_lines r;
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    scan_refusals(s, who, &r);
    /* The last ones are logged by the next tick at least a second after the line before. */
    for (int i = 0;
         i < 10000 && (r.per_ip < per_ip || r.max_clients < max_clients) && rc_now_ms() < deadline;
         i++) {
        rc_err_wait_lines(s, rc_err_lines(s) + 1, 50);
        scan_refusals(s, who, &r);
    }
    print_message("%llu + %llu refusals logged in %d line(s), the closest %lld ms apart\n",
                  (unsigned long long)r.per_ip, (unsigned long long)r.max_clients, r.lines,
                  (long long)(r.min_gap_ms == INT64_MAX ? -1 : r.min_gap_ms));
    if (r.per_ip != per_ip || r.max_clients != max_clients) {
        rc_dump(s);
        fail_msg("the refusal lines count %llu per address and %llu for --max-clients, the relay "
                 "made %llu and %llu",
                 (unsigned long long)r.per_ip, (unsigned long long)r.max_clients,
                 (unsigned long long)per_ip, (unsigned long long)max_clients);
    }
    if (r.min_gap_ms < GAP_MS) {
        rc_dump(s);
        fail_msg("two refusal lines only %lld ms apart (at most one a second)",
                 (long long)r.min_gap_ms);
    }
}

/* ------------------------------------------------------------------ IPv4: two addresses */

static void test_per_ip_ipv4(void **state)
{
    int mport;
    struct rc_server *s =
        hx_start_metrics(&mport, "--max-clients-per-ip", "2", "--log-timestamps", NULL);
    int idle = rc_fd_count(s);
    const char *one = "127.0.0.1", *two = "127.0.0.2";

    int a = join_from(s, one), b = join_from(s, one);
    refused_from(s, one);
    /* Another address has its own count. */
    int d = join_from(s, two), e = join_from(s, two);
    refused_from(s, two);
    expect_counters(s, mport, 2, 0, 4, 4);
    hx_expect_fds(s, idle + 4, "with four clients");

    /* The first two still relay to each other (and to everyone else). */
    relays(a, (int[]){b, d, e}, 3, "from a\n");
    relays(b, (int[]){a, d, e}, 3, "from b\n");

    /* One of them goes: once the relay has closed its descriptor, its address has room again. */
    size_t mark = rc_log_mark(s);
    int pb = rc_close(b);
    rc_wait_client_log(s, mark, pb, "disconnected");
    hx_expect_fds(s, idle + 3, "after one of 127.0.0.1's clients left");
    int g = join_from(s, one);
    relays(g, (int[]){a, d, e}, 3, "from the newcomer\n");
    relays(a, (int[]){g, d, e}, 3, "to the newcomer\n");
    refused_from(s, one);
    expect_counters(s, mport, 3, 0, 5, 4);
    expect_refusals_logged(s, "127.0.0.", 3, 0);

    /* A burst from the full address while frames flow from a to g. */
    refuse_burst(s, one, BURST, a, (int[]){g, d, e}, 3);
    expect_counters(s, mport, 3 + BURST, 0, 5, 4);
    expect_refusals_logged(s, "127.0.0.", 3 + BURST, 0);
    relays(a, (int[]){g, d, e}, 3, "after the burst\n");
    relays(d, (int[]){a, g, e}, 3, "from 127.0.0.2\n");

    /* Everyone leaves: the descriptors go back to idle, and so do the counts. */
    rc_close(d);
    rc_close(e);
    rc_close(a);
    rc_close(g);
    assert_true(hx_wait_metric(s, mport, "ringcast_clients", 0, RC_WAIT_MS) == 0);
    hx_expect_fds(s, idle, "with every client gone");
    int a2 = join_from(s, one), b2 = join_from(s, one), d2 = join_from(s, two),
        e2 = join_from(s, two);
    refused_from(s, one);
    refused_from(s, two);
    relays(a2, (int[]){b2, d2, e2}, 3, "again\n");
    expect_connected_lines(s, 9);
    expect_counters(s, mport, 5 + BURST, 0, 9, 4);
    rc_close(a2);
    rc_close(b2);
    rc_close(d2);
    rc_close(e2);
    assert_true(hx_wait_metric(s, mport, "ringcast_clients", 0, RC_WAIT_MS) == 0);
    hx_expect_fds(s, idle, "at the end");
    hx_expect_relays(s);
    hx_expect_fds(s, idle, "after the fresh pair");
}

/* ------------------------------------------------------------------ both limits */

/*
 * With --max-clients 3 as well: a connection past both limits counts under per_ip (its address
 * would be refused whatever the others do), one past --max-clients only under max_clients, and
 * one log line a second covers both.
 */
static void test_per_ip_and_max_clients(void **state)
{
    int mport;
    struct rc_server *s = hx_start_metrics(&mport, "--max-clients", "3", "--max-clients-per-ip",
                                           "2", "--log-timestamps", NULL);
    int idle = rc_fd_count(s);
    const char *one = "127.0.0.1", *two = "127.0.0.2";
    int a = join_from(s, one), b = join_from(s, one), d = join_from(s, two);
    refused_from(s, one);
    refused_from(s, two);
    refused_from(s, two);
    refused_from(s, one);
    expect_counters(s, mport, 2, 2, 3, 3);
    expect_refusals_logged(s, one, 2, 2);
    relays(a, (int[]){b, d}, 2, "all three\n");
    rc_close(a);
    rc_close(b);
    rc_close(d);
    assert_true(hx_wait_metric(s, mport, "ringcast_clients", 0, RC_WAIT_MS) == 0);
    hx_expect_fds(s, idle, "with every client gone");
    expect_connected_lines(s, 3);
}

/* ------------------------------------------------------------------ IPv6: ::1 */

static void test_per_ip_ipv6(void **state)
{
    if (!rc_have_ipv6()) {
        print_message("IPv6 is not available on loopback: skipped\n");
        skip();
    }
    int mport;
    struct rc_server *s = hx_start_metrics(&mport, "--address", "::1", "--max-clients-per-ip", "2",
                                           "--log-timestamps", NULL);
    assert_string_equal(s->host, "::1");
    int idle = rc_fd_count(s);

    int a = join_from(s, NULL), b = join_from(s, NULL);
    refused_from(s, NULL);
    expect_counters(s, mport, 1, 0, 2, 2);
    relays(a, &b, 1, "v6 from a\n");
    relays(b, &a, 1, "v6 from b\n");

    size_t mark = rc_log_mark(s);
    int pb = rc_close(b);
    rc_wait_client_log(s, mark, pb, "disconnected");
    hx_expect_fds(s, idle + 1, "after one of ::1's clients left");
    int g = join_from(s, NULL);
    relays(a, &g, 1, "v6 to the newcomer\n");
    refuse_burst(s, NULL, 20, a, &g, 1);
    expect_counters(s, mport, 21, 0, 3, 2);
    expect_refusals_logged(s, "::1", 21, 0);
    expect_connected_lines(s, 3);

    rc_close(a);
    rc_close(g);
    assert_true(hx_wait_metric(s, mport, "ringcast_clients", 0, RC_WAIT_MS) == 0);
    hx_expect_fds(s, idle, "with every client gone");
    hx_expect_relays(s);
    hx_expect_fds(s, idle, "after the fresh pair");
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_per_ip_ipv4, rc_teardown),
        cmocka_unit_test_teardown(test_per_ip_and_max_clients, rc_teardown),
        cmocka_unit_test_teardown(test_per_ip_ipv6, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
