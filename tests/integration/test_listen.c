/*
 * Listeners and roles (--listen ADDR:PORT[,role=both|pub|sub][,noauth]): the start lines, what
 * pub-only and sub-only clients get and may do (enforced by the relay, seen from the sockets, the
 * log and /metrics), a pub-only publisher streaming far past --max-queue, EMFILE on an extra
 * listener, the drain closing every listener, IPv6, and bad values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define RUN_MS 10000
#define QUIET_MS 300 /* a negative check: passing it proves nothing, failing it is a real error */

/* ------------------------------------------------------------------ helpers */

/* The default listener plus a sub-only and a pub-only one (noauth), all on free ports. */
struct three {
    struct rc_server *s;
    int sub_port, pub_port;
};

static struct three start_three(const char *const *extra)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0,role=sub";
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0,role=pub,noauth";
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    struct rc_opts o = {.argv = argv};
    struct three t = {.s = rc_start_ex(&o)};
    t.sub_port = rc_listener_port(t.s, "role=sub", NULL, 0, NULL, 0);
    t.pub_port = rc_listener_port(t.s, "role=pub,noauth", NULL, 0, NULL, 0);
    return t;
}

/* Fails unless nothing at all (no byte, no EOF) is readable on @fd now and for QUIET_MS. */
static void expect_nothing(int fd, const char *who)
{
    char b[64];
    ssize_t n = rc_recv_now(fd, b, sizeof(b));
    if (n != 0)
        fail_msg("%s: %s", who, n < 0 ? "closed" : "received data");
    if (!rc_quiet(fd, QUIET_MS))
        fail_msg("%s received something", who);
}

static int metrics_port(struct rc_server *s)
{
    char line[256];
    if (!rc_log_wait(s, 0, "Metrics at: http://127.0.0.1:", RC_WAIT_MS) ||
        !rc_log_find(s, 0, "Metrics at: http://127.0.0.1:", line, sizeof(line)))
        fail_msg("no \"Metrics at:\" line");
    return atoi(strstr(line, "http://127.0.0.1:") + strlen("http://127.0.0.1:"));
}

/* Whether connections to 127.0.0.1:@port are refused (nothing listens there) within
 * RC_WAIT_MS: a listener closed while its accept's cancellation is on its way may still take one
 * for a moment. */
static bool refused(int port)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        bool r = connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno == ECONNREFUSED;
        close(fd);
        if (r || sp_remaining_ms(deadline) == 0)
            return r;
        sp_nap_ms(20);
    }
}

/* ------------------------------------------------------------------ tests */

/*
 * One start line per listener: the default one exactly as ever, the others with their real port
 * and their flags as given (the role first when it was left out); -q keeps them all.
 */
static void test_listen_start_lines(void **state)
{
    static const char *const extra[] = {"--listen", "127.0.0.1:0,noauth", NULL};
    struct three t = start_three(extra);
    char line[256], want[256];
    assert_true(rc_log_find(t.s, 0, "Server started at: ", line, sizeof(line)));
    snprintf(want, sizeof(want), "Server started at: 127.0.0.1:%d", t.s->port);
    assert_string_equal(line, want);

    static const char *const flags[] = {"role=sub", "role=pub,noauth", "role=both,noauth"};
    int ports[3];
    for (int i = 0; i < 3; i++) {
        char host[64];
        ports[i] = rc_listener_port(t.s, flags[i], host, sizeof(host), line, sizeof(line));
        snprintf(want, sizeof(want), "Listening at: 127.0.0.1:%d (%s)", ports[i], flags[i]);
        assert_string_equal(line, want);
        assert_string_equal(host, "127.0.0.1");
        assert_true(ports[i] != t.s->port);
        for (int j = 0; j < i; j++)
            assert_true(ports[i] != ports[j]);
    }
    assert_int_equal(rc_log_count(t.s, 0, "Server started at: "), 1);
    assert_int_equal(rc_log_count(t.s, 0, "Listening at: "), 3);

    /* A role=both listener is the default one again, elsewhere: it publishes and receives. */
    int a = rc_connect(t.s), b = rc_connect_to(t.s, "127.0.0.1", ports[2]);
    rc_send_str(a, "to b\n");
    rc_expect_str(b, "to b\n");
    rc_send_str(b, "to a\n");
    rc_expect_str(a, "to a\n");

    /* -q: only the start lines (and warnings) are printed, all of them. */
    const char *quiet[] = {"-q", "--listen", "127.0.0.1:0,role=sub", NULL};
    struct rc_opts o = {.argv = quiet};
    struct rc_server *q = rc_start_ex(&o);
    int qport = rc_listener_port(q, "role=sub", NULL, 0, line, sizeof(line));
    snprintf(want, sizeof(want), "Listening at: 127.0.0.1:%d (role=sub)", qport);
    assert_string_equal(line, want);
}

/*
 * A pub-only publisher's frames reach both-role and sub-only subscribers; the pub-only client is
 * sent nothing, not even what others publish. A both-role client relays as before, to sub-only
 * clients too, and never to pub-only ones.
 */
static void test_listen_roles_relay(void **state)
{
    struct three t = start_three(NULL);
    int both = rc_connect(t.s), both2 = rc_connect(t.s);
    int sub = rc_connect_to(t.s, "127.0.0.1", t.sub_port);
    int pub = rc_connect_to(t.s, "127.0.0.1", t.pub_port);
    int pub2 = rc_connect_to(t.s, "127.0.0.1", t.pub_port);

    for (int i = 0; i < 20; i++) {
        char f[64];
        snprintf(f, sizeof(f), "from pub %d\n", i);
        rc_send_str(pub, f);
        rc_expect_str(both, f);
        rc_expect_str(both2, f);
        rc_expect_str(sub, f);
    }
    rc_send_str(both, "from both\n");
    rc_expect_str(both2, "from both\n");
    rc_expect_str(sub, "from both\n");
    rc_send_str(pub2, "from pub2\n");
    rc_expect_str(both, "from pub2\n");
    rc_expect_str(both2, "from pub2\n");
    rc_expect_str(sub, "from pub2\n");
    /* Everyone else got everything: whatever the pub-only clients were sent would be there. */
    expect_nothing(pub, "the pub-only publisher");
    expect_nothing(pub2, "the second pub-only publisher");
    expect_nothing(both, "the both-role publisher (its own frame)");
}

/*
 * A pub-only publisher streams far past --max-queue (and past the whole broadcast log) while a
 * subscriber reads, beside another pub-only client that never reads: both have tiny receive
 * buffers, yet neither is cut (neither is a receiver, so neither has a backlog, even of the
 * other's frames) nor holds the log back (their cursors pin nothing: the log wraps, which would
 * stall the publisher for good if they did).
 */
static void test_listen_pub_only_streams_past_max_queue(void **state)
{
    static const char *const extra[] = {"--max-queue", "1M", "--max-frame", "4K", NULL};
    struct three t = start_three(extra);
    int sub = rc_connect_to(t.s, "127.0.0.1", t.sub_port);
    size_t mark = rc_log_mark(t.s);
    const struct rc_sockopts tiny = {.port = t.pub_port, .rcvbuf = 4096};
    int pub = rc_connect_opts(t.s, "127.0.0.1", &tiny);
    int idle = rc_connect_opts(t.s, "127.0.0.1", &tiny);
    rc_wait_client_log(t.s, mark, rc_port_of(pub), "connected.");
    rc_wait_client_log(t.s, mark, rc_port_of(idle), "connected.");

    const size_t flen = 1024, frames = 48 * 1024; /* 48 MiB: the log is 32 MiB here */
    size_t total = flen * frames;
    char *data = malloc(total), *in = malloc(total);
    assert_true(data && in);
    for (size_t i = 0; i < frames; i++)
        rc_make_line(data + i * flen, flen, "s", (uint32_t)i);
    struct rc_flow f[2] = {
        {.fd = pub, .out = (const uint8_t *)data, .out_len = total},
        {.fd = sub, .in = (uint8_t *)in, .in_len = total},
    };
    if (!rc_transfer(f, 2, 2 * RC_IO_MS)) {
        rc_dump(t.s);
        fail_msg("48 MiB from a pub-only publisher: %zu sent, %zu received", f[0].out_done,
                 f[1].in_done);
    }
    assert_memory_equal(in, data, total);
    free(data);
    free(in);

    /* Both still connected, still publishing, still sent nothing. */
    rc_send_str(idle, "idle too\n");
    rc_expect_str(sub, "idle too\n");
    rc_send_str(pub, "still here\n");
    rc_expect_str(sub, "still here\n");
    char needle[64];
    rc_needle(needle, sizeof(needle), rc_port_of(pub), "disconnected");
    assert_int_equal(rc_log_count(t.s, mark, needle), 0);
    rc_needle(needle, sizeof(needle), rc_port_of(idle), "disconnected");
    assert_int_equal(rc_log_count(t.s, mark, needle), 0);
    expect_nothing(pub, "the pub-only publisher");
    expect_nothing(idle, "the idle pub-only client");
}

/* Only pub-only clients: nobody receives, so their frames are consumed, never waited for. */
static void test_listen_pub_only_without_receivers(void **state)
{
    static const char *const extra[] = {"--max-queue", "1M",          "--max-frame", "4K",
                                        "--metrics",   "127.0.0.1:0", NULL};
    struct three t = start_three(extra);
    int mport = metrics_port(t.s);
    int pub = rc_connect_to(t.s, "127.0.0.1", t.pub_port);
    const size_t flen = 1024, frames = 48 * 1024; /* more than the log holds */
    char *data = malloc(flen * frames);
    assert_non_null(data);
    for (size_t i = 0; i < frames; i++)
        rc_make_line(data + i * flen, flen, "c", (uint32_t)i);
    rc_send(pub, data, flen * frames);
    free(data);
    rc_metrics_wait(t.s, mport, "ringcast_frames_received_total", (double)frames);
    char *text = rc_metrics_get(t.s, mport);
    assert_true(rc_metrics_sample(text, "ringcast_frames_delivered_total") == 0);
    assert_true(rc_metrics_sample(text, "ringcast_pending_output_bytes") == 0);
    assert_true(rc_metrics_sample(text, "ringcast_max_client_backlog_bytes") == 0);
    free(text);
    /* A subscriber that comes now gets what is published from now on. */
    int sub = rc_connect_to(t.s, "127.0.0.1", t.sub_port);
    rc_send_str(pub, "now\n");
    rc_expect_str(sub, "now\n");
}

/*
 * A sub-only client that sends one byte is disconnected with the reason: one log line, counted
 * under disconnects_total{reason="protocol_violation"} and
 * protocol_violations_total{reason="sub_sent"}; nothing it sent is relayed; the others carry on.
 * Connections are counted by listener and role.
 */
static void test_listen_sub_only_sends_a_byte(void **state)
{
    static const char *const extra[] = {"--metrics", "127.0.0.1:0", NULL};
    struct three t = start_three(extra);
    int mport = metrics_port(t.s);
    int both = rc_connect(t.s);
    int sub = rc_connect_to(t.s, "127.0.0.1", t.sub_port);
    int sub2 = rc_connect_to(t.s, "127.0.0.1", t.sub_port);
    int pub = rc_connect_to(t.s, "127.0.0.1", t.pub_port);

    char name[160];
    char *text = rc_metrics_get(t.s, mport);
    snprintf(name, sizeof(name),
             "ringcast_listener_clients{listener=\"127.0.0.1:%d\",role=\"both\"}", t.s->port);
    assert_true(rc_metrics_sample(text, name) == 1);
    snprintf(name, sizeof(name),
             "ringcast_listener_clients{listener=\"127.0.0.1:%d\",role=\"sub\"}", t.sub_port);
    assert_true(rc_metrics_sample(text, name) == 2);
    snprintf(name, sizeof(name),
             "ringcast_listener_clients{listener=\"127.0.0.1:%d\",role=\"pub\"}", t.pub_port);
    assert_true(rc_metrics_sample(text, name) == 1);
    snprintf(name, sizeof(name),
             "ringcast_listener_connections_accepted_total{listener=\"127.0.0.1:%d\",role=\"sub\"}",
             t.sub_port);
    assert_true(rc_metrics_sample(text, name) == 2);
    assert_true(rc_metrics_sample(text, "ringcast_clients") == 4);
    assert_true(
        rc_metrics_sample(text, "ringcast_protocol_violations_total{reason=\"sub_sent\"}") == 0);
    free(text);

    size_t mark = rc_log_mark(t.s);
    rc_send_str(sub, "x\n");
    rc_wait_client_log(t.s, mark, rc_port_of(sub),
                       "disconnected (protocol violation: sent data on a sub-only listener).");
    rc_expect_closed(sub);
    char needle[64];
    rc_needle(needle, sizeof(needle), rc_port_of(sub), "disconnected");
    assert_int_equal(rc_log_count(t.s, mark, needle), 1);

    /* Its "x" was never relayed: what comes next is the next frame. */
    rc_send_str(pub, "after\n");
    rc_expect_str(both, "after\n");
    rc_expect_str(sub2, "after\n");
    rc_send_str(both, "and more\n");
    rc_expect_str(sub2, "and more\n");

    rc_metrics_wait(t.s, mport, "ringcast_protocol_violations_total{reason=\"sub_sent\"}", 1);
    text = rc_metrics_get(t.s, mport);
    assert_true(
        rc_metrics_sample(text, "ringcast_disconnects_total{reason=\"protocol_violation\"}") == 1);
    assert_true(rc_metrics_sample(text, "ringcast_frames_received_total") == 2);
    snprintf(name, sizeof(name),
             "ringcast_listener_clients{listener=\"127.0.0.1:%d\",role=\"sub\"}", t.sub_port);
    assert_true(rc_metrics_sample(text, name) == 1);
    free(text);

    /* Half a frame is as much a violation as a whole one. */
    mark = rc_log_mark(t.s);
    rc_send_str(sub2, "y");
    rc_wait_client_log(t.s, mark, rc_port_of(sub2),
                       "disconnected (protocol violation: sent data on a sub-only listener).");
    rc_expect_closed(sub2);
    rc_metrics_wait(t.s, mport, "ringcast_protocol_violations_total{reason=\"sub_sent\"}", 2);
}

/* Out of descriptors while a client comes to an extra listener: shed, no spin, and accepted again
 * once the limit is back (the accept re-armed with it). */
static void test_listen_emfile_on_extra_listener(void **state)
{
    struct three t = start_three(NULL);
    int a = rc_connect(t.s);
    int sub = rc_connect_to(t.s, "127.0.0.1", t.sub_port);

    struct rlimit old, low;
    assert_int_equal(prlimit(t.s->pid, RLIMIT_NOFILE, NULL, &old), 0);
    int lowest = rc_lowest_free_fd(t.s);
    assert_true(lowest > 0);
    low.rlim_cur = (rlim_t)lowest;
    low.rlim_max = old.rlim_max;
    assert_int_equal(prlimit(t.s->pid, RLIMIT_NOFILE, &low, NULL), 0);

    int c1 = rc_connect_opts(t.s, "127.0.0.1", &(struct rc_sockopts){.port = t.sub_port});
    int c2 = rc_connect_opts(t.s, "127.0.0.1", &(struct rc_sockopts){.port = t.pub_port});
    (void)c1;
    (void)c2;
    /* Not a spin on the failing accepts: a measured window, not a wait. */
    long cpu0 = rc_cpu_ms(t.s);
    int64_t w0 = rc_now_ms();
    struct timespec one = {.tv_sec = 1};
    nanosleep(&one, NULL);
    long cpu1 = rc_cpu_ms(t.s);
    int64_t wall = rc_now_ms() - w0;
    assert_true(cpu0 >= 0 && cpu1 >= 0);
    if (cpu1 - cpu0 > wall / 2)
        fail_msg("the server used %ld ms of CPU in %lld ms while accept failed with EMFILE",
                 cpu1 - cpu0, (long long)wall);
    rc_send_str(a, "during emfile\n");
    rc_expect_str(sub, "during emfile\n");

    assert_int_equal(prlimit(t.s->pid, RLIMIT_NOFILE, &old, NULL), 0);
    int sub3 = rc_connect_to(t.s, "127.0.0.1", t.sub_port);
    int pub3 = rc_connect_to(t.s, "127.0.0.1", t.pub_port);
    rc_send_str(pub3, "after emfile\n");
    rc_expect_str(a, "after emfile\n");
    rc_expect_str(sub, "after emfile\n");
    rc_expect_str(sub3, "after emfile\n");
}

/* SIGTERM: the drain closes every listener at once, while it still flushes to a stuck reader. */
static void test_listen_drain_closes_all(void **state)
{
    static const char *const extra[] = {"--drain-timeout", "30", NULL};
    struct three t = start_three(extra);
    int pub = rc_connect_to(t.s, "127.0.0.1", t.pub_port);
    size_t mark = rc_log_mark(t.s);
    int stuck = rc_connect_opts(t.s, "127.0.0.1",
                                &(struct rc_sockopts){.port = t.sub_port, .rcvbuf = 4096});
    rc_wait_client_log(t.s, mark, rc_port_of(stuck), "connected.");
    int fast = rc_connect(t.s);
    size_t len = 2 << 20; /* more than the stuck reader's socket holds */
    char *data = malloc(len), *in = malloc(len);
    assert_true(data && in);
    for (size_t i = 0; i < len / 1024; i++)
        rc_make_line(data + i * 1024, 1024, "d", (uint32_t)i);
    struct rc_flow f[2] = {{.fd = pub, .out = (const uint8_t *)data, .out_len = len},
                           {.fd = fast, .in = (uint8_t *)in, .in_len = len}};
    assert_true(rc_transfer(f, 2, RC_IO_MS));
    free(data);
    free(in);
    mark = rc_log_mark(t.s);
    rc_signal(t.s, SIGTERM);
    if (!rc_log_wait(t.s, mark, "Shutting down", RC_WAIT_MS))
        fail_msg("no \"Shutting down\" line after SIGTERM");
    assert_true(rc_alive(t.s));
    assert_true(refused(t.s->port));
    assert_true(refused(t.sub_port));
    assert_true(refused(t.pub_port));
    rc_reset(stuck); /* the drain is over: exit 0 */
    int st = rc_wait_exit(t.s, RC_WAIT_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("exit status 0x%x after the drain", st);
}

/* An IPv6 listener ([::1]:0) beside the IPv4 default one. */
static void test_listen_ipv6(void **state)
{
    if (!rc_have_ipv6())
        skip();
    const char *argv[] = {"--listen", "[::1]:0,role=sub", NULL};
    struct rc_opts o = {.argv = argv};
    struct rc_server *s = rc_start_ex(&o);
    char host[64], line[256], want[256];
    int port = rc_listener_port(s, "role=sub", host, sizeof(host), line, sizeof(line));
    snprintf(want, sizeof(want), "Listening at: [::1]:%d (role=sub)", port);
    assert_string_equal(line, want);
    assert_string_equal(host, "::1");
    int a = rc_connect(s);
    int sub = rc_connect_to(s, "::1", port);
    rc_send_str(a, "over ipv6\n");
    rc_expect_str(sub, "over ipv6\n");
    size_t mark = rc_log_mark(s);
    rc_send_str(sub, "no\n");
    rc_wait_client_log(s, mark, rc_port_of(sub), "disconnected (protocol violation");
}

/* A bad --listen: exit 2 with one line naming it; a listener that cannot bind: exit 1. */
static void test_listen_bad_values(void **state)
{
    static const char *const bad[][2] = {
        {"--listen", "localhost:5000"},
        {"--listen", "::1:5000"},
        {"--listen", "127.0.0.1"},
        {"--listen", "127.0.0.1:70000"},
        {"--listen", "127.0.0.1:0,role=x"},
        {"--listen", "127.0.0.1:0,tls"},
        {"--listen", "127.0.0.1:0,noauth,noauth"},
        {"--listen", "127.0.0.1:0,role=sub,role=pub"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = {bad[i][0], bad[i][1], NULL};
        struct rc_opts o = {.argv = argv};
        char *out, *err;
        int st = rc_run(&o, RUN_MS, &out, &err);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 2 || !strstr(err, "--listen") ||
            strchr(err, '\n') != err + strlen(err) - 1 || strstr(out, "Server started"))
            fail_msg("%s %s: status 0x%x, stderr \"%s\", stdout \"%s\"", bad[i][0], bad[i][1], st,
                     err, out);
        free(out);
        free(err);
    }
    /* Nine extra listeners: one too many. */
    const char *nine[19];
    for (int i = 0; i < 9; i++) {
        nine[2 * i] = "--listen";
        nine[2 * i + 1] = "127.0.0.1:0";
    }
    nine[18] = NULL;
    struct rc_opts o = {.argv = nine};
    char *out, *err;
    int st = rc_run(&o, RUN_MS, &out, &err);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 2 || !strstr(err, "at most 8"))
        fail_msg("nine --listen: status 0x%x, stderr \"%s\"", st, err);
    free(out);
    free(err);
    /* Eight are fine. */
    nine[16] = NULL;
    struct rc_server *s = rc_start_ex(&o);
    assert_int_equal(rc_log_wait_count(s, 0, "Listening at: ", 8, RC_WAIT_MS), 8);

    /* An address in use (another listener's port) is a listen failure, exit 1. */
    int used = rc_listener_port(s, "role=both", NULL, 0, NULL, 0);
    char spec[64];
    snprintf(spec, sizeof(spec), "127.0.0.1:%d,role=sub", used);
    const char *clash[] = {"--listen", spec, NULL};
    o.argv = clash;
    st = rc_run(&o, RUN_MS, &out, &err);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 1 || !strstr(err, "cannot listen on"))
        fail_msg("--listen on a port in use: status 0x%x, stderr \"%s\"", st, err);
    free(out);
    free(err);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_listen_start_lines, rc_teardown),
        cmocka_unit_test_teardown(test_listen_roles_relay, rc_teardown),
        cmocka_unit_test_teardown(test_listen_pub_only_streams_past_max_queue, rc_teardown),
        cmocka_unit_test_teardown(test_listen_pub_only_without_receivers, rc_teardown),
        cmocka_unit_test_teardown(test_listen_sub_only_sends_a_byte, rc_teardown),
        cmocka_unit_test_teardown(test_listen_emfile_on_extra_listener, rc_teardown),
        cmocka_unit_test_teardown(test_listen_drain_closes_all, rc_teardown),
        cmocka_unit_test_teardown(test_listen_ipv6, rc_teardown),
        cmocka_unit_test_teardown(test_listen_bad_values, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
