/* flood against the real ringcast: exact counts in both framings, the JSON result's fields and
 * their consistency, bad arguments and a refused connection. */
#include "flood_support.h"
#include "harness.h"

#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define PUBS 2
#define COUNT 500
#define SUBS 20

static void near(double got, double want, double rel, const char *what)
{
    double tol = want * rel + 1e-9;
    if (got < want - tol || got > want + tol) {
        print_error("%s: got %g, want %g (within %g %%)\n", what, got, want, rel * 100);
        fail();
    }
}

/* Every figure of a lossless run of pubs x count messages to subs subscribers, checked against
 * the others. */
static void check_lossless(const char *j, int pubs, int count, int subs, int size, bool server)
{
    assert_non_null(j);
    double published = fs_json_need(j, "published");
    assert_int_equal((long)published, (long)pubs * count);
    assert_int_equal((long)fs_json_need(j, "expected_deliveries"), (long)published * subs);
    assert_int_equal((long)fs_json_need(j, "deliveries"), (long)published * subs);
    assert_int_equal((long)fs_json_need(j, "lost"), 0);
    assert_int_equal((long)fs_json_need(j, "duplicated"), 0);
    assert_int_equal((long)fs_json_need(j, "reordered"), 0);
    assert_int_equal((long)fs_json_need(j, "corrupt"), 0);
    assert_int_equal((long)fs_json_need(j, "errors"), 0);

    /* The configuration is echoed. */
    assert_int_equal((long)fs_json_need(j, "config.subs"), subs);
    assert_int_equal((long)fs_json_need(j, "config.pubs"), pubs);
    assert_int_equal((long)fs_json_need(j, "config.size"), size);

    /* Rates follow from the counts and the window. */
    double window = fs_json_need(j, "window_s");
    assert_true(window > 0 && window < 60);
    double dps = fs_json_need(j, "deliveries_per_s");
    near(dps, published * subs / window, 0.01, "deliveries_per_s vs deliveries / window_s");
    near(fs_json_need(j, "payload_mb_per_s"), dps * size / 1e6, 0.01,
         "payload_mb_per_s vs deliveries_per_s x size");

    /* Latency: every key there, in order. */
    static const char *const keys[] = {"latency_us.p50",  "latency_us.p90",   "latency_us.p99",
                                       "latency_us.p999", "latency_us.p9999", "latency_us.max"};
    double prev = 0;
    bool timed = fs_json_need(j, "latency_us.samples") > 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        assert_true(sp_json_has(j, keys[i]));
        if (!timed) /* no verified subscriber: null */
            continue;
        double v = fs_json_need(j, keys[i]);
        if (v < prev) {
            print_error("%s = %g is below the previous percentile %g\n", keys[i], v, prev);
            fail();
        }
        prev = v;
    }
    assert_true(prev < 60e6);

    /* The driver's own delay: one figure per latency sample (the kernel's receive timestamp of
     * every verified read), in order, and never above the whole latency. */
    static const char *const dkeys[] = {"driver_overhead_us.p50", "driver_overhead_us.p90",
                                        "driver_overhead_us.p99", "driver_overhead_us.p999",
                                        "driver_overhead_us.max"};
    assert_int_equal((long)fs_json_need(j, "driver_overhead_us.samples"),
                     (long)fs_json_need(j, "latency_us.samples"));
    double dprev = 0;
    for (size_t i = 0; i < sizeof(dkeys) / sizeof(dkeys[0]); i++) {
        assert_true(sp_json_has(j, dkeys[i]));
        if (!timed)
            continue;
        double v = fs_json_need(j, dkeys[i]);
        if (v < dprev) {
            print_error("%s = %g is below the previous percentile %g\n", dkeys[i], v, dprev);
            fail();
        }
        dprev = v;
    }
    /* 1 us of slack: both are rounded to 0.1 us, and their buckets differ. */
    assert_true(!timed || dprev <= fs_json_need(j, "latency_us.max") + 1);
    assert_true(sp_json_has(j, "pub_lag_us.samples"));
    assert_true(fs_json_need(j, "flood_spin_cpu") >= 0);
    assert_true(sp_json_has(j, "config.spin_us"));

    double cpu = fs_json_need(j, "flood_cpu");
    assert_true(cpu >= 0 && cpu <= 64);
    assert_true(sp_json_has(j, "server_cpu"));
    if (server) {
        double scpu = fs_json_need(j, "server_cpu");
        assert_true(scpu >= 0 && scpu <= 64);
    }
}

static void port_str(char *buf, size_t cap, int port)
{
    snprintf(buf, cap, "%d", port);
}

static void test_line_exact_counts(void **state)
{
    (void)state;
    /* The warm-up runs at full speed. The two publishers receive each other's frames and discard
     * them, so they read faster than the 20 verifying subscribers: they lead, publishing goes on
     * at their pace, and at the default --max-queue the subscribers would be cut as slow
     * consumers (docs/PROTOCOL.md, flow control). A large quota keeps this a counting test. */
    struct rc_server *s = rc_start("-q", "--max-queue", "256M", NULL);
    char port[16], pid[16];
    port_str(port, sizeof(port), s->port);
    snprintf(pid, sizeof(pid), "%d", (int)s->pid);
    const char *args[] = {"--proto",      "line",   "--port",   port,      "--subs",
                          "20",           "--pubs", "2",        "--count", "500",
                          "--size",       "64",     "--warmup", "0.2",     "--expect-lossless",
                          "--server-pid", pid,      NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 0);
    check_lossless(r.json, PUBS, COUNT, SUBS, 64, true);
    /* Every subscriber was verified, so every delivery was timed. */
    assert_int_equal((long)fs_json_need(r.json, "latency_us.samples"), (long)PUBS * COUNT * SUBS);
    assert_true(fs_json_need(r.json, "wire_size.publish") == 64);
    assert_true(fs_json_need(r.json, "wire_size.deliver") == 64);
    fs_flood_free(&r);
}

static void test_len32_exact_counts(void **state)
{
    (void)state;
    struct rc_server *s = rc_start("-q", "--framing", "len32", NULL);
    char port[16], pid[16];
    port_str(port, sizeof(port), s->port);
    snprintf(pid, sizeof(pid), "%d", (int)s->pid);
    /* 5 verified subscribers and 15 that count bytes. */
    const char *args[] = {"--proto",
                          "len32",
                          "--port",
                          port,
                          "--subs",
                          "20",
                          "--pubs",
                          "2",
                          "--count",
                          "500",
                          "--size",
                          "100",
                          "--warmup",
                          "0",
                          "--verify",
                          "5",
                          "--expect-lossless",
                          "--server-pid",
                          pid,
                          "--read-mode",
                          "trunc",
                          NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 0);
    check_lossless(r.json, PUBS, COUNT, SUBS, 100, true);
    assert_int_equal((long)fs_json_need(r.json, "latency_us.samples"), (long)PUBS * COUNT * 5);
    assert_true(fs_json_need(r.json, "wire_size.publish") == 104);
    assert_true(fs_json_need(r.json, "wire_size.deliver") == 104);
    fs_flood_free(&r);
}

/* Byte-counting subscribers only, 1 KiB lines: counts still exact. */
static void test_line_byte_counting(void **state)
{
    (void)state;
    struct rc_server *s = rc_start("-q", NULL);
    char port[16];
    port_str(port, sizeof(port), s->port);
    const char *args[] = {
        "--proto",           "line",        "--port", port, "--subs",   "20", "--pubs",   "2",
        "--count",           "500",         "--size", "1K", "--warmup", "0",  "--verify", "0",
        "--expect-lossless", "--read-mode", "trunc",  NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 0);
    check_lossless(r.json, PUBS, COUNT, SUBS, 1024, false);
    /* No verified subscriber: no latency samples, percentiles null. */
    assert_int_equal((long)fs_json_need(r.json, "latency_us.samples"), 0);
    fs_flood_free(&r);
}

/*
 * Full speed with the default options: the publisher is far faster than the fan-out, so the
 * relay must pace it (back-pressure) rather than cut readers that are merely behind. 40 MiB per
 * subscriber, 2 GiB of deliveries in all: nothing lost and no connection closed.
 */
static void test_full_speed_paced_lossless(void **state)
{
    (void)state;
    struct rc_server *s = rc_start("-q", NULL);
    char port[16];
    port_str(port, sizeof(port), s->port);
    const char *args[] = {
        "--proto",           "line",        "--port", port, "--subs",   "50", "--pubs",   "1",
        "--count",           "40000",       "--size", "1K", "--warmup", "0",  "--verify", "2",
        "--expect-lossless", "--read-mode", "trunc",  NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    if (r.code != 0)
        print_error("flood exited %d:\n%s\n", r.code, r.json ? r.json : "");
    assert_int_equal(r.code, 0);
    assert_int_equal((long)fs_json_need(r.json, "errors"), 0);
    check_lossless(r.json, 1, 40000, 50, 1024, false);
    fs_flood_free(&r);
}

/* A --max-queue smaller than a receive buffer (64 KiB) still relays at full speed: an append
 * larger than the pace window waits for readers to catch up, not forever. */
static void test_small_queue_full_speed(void **state)
{
    (void)state;
    struct rc_server *s = rc_start("-q", "--max-queue", "16K", "--max-frame", "1K", NULL);
    char port[16];
    port_str(port, sizeof(port), s->port);
    const char *args[] = {
        "--proto",           "line",        "--port", port, "--subs",   "5", "--pubs",   "1",
        "--count",           "20000",       "--size", "64", "--warmup", "0", "--verify", "1",
        "--expect-lossless", "--read-mode", "trunc",  NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 0);
    check_lossless(r.json, 1, 20000, 5, 64, false);
    fs_flood_free(&r);
}

/* A fixed rate: every message timed from its intended send time, the run lasts about as long as
 * the schedule says. */
static void test_fixed_rate(void **state)
{
    (void)state;
    struct rc_server *s = rc_start("-q", NULL);
    char port[16];
    port_str(port, sizeof(port), s->port);
    const char *args[] = {"--proto",
                          "line",
                          "--port",
                          port,
                          "--subs",
                          "10",
                          "--pubs",
                          "1",
                          "--count",
                          "300",
                          "--rate",
                          "1000",
                          "--warmup",
                          "0",
                          "--verify",
                          "3",
                          "--read-interval",
                          "5000",
                          "--read-mode",
                          "trunc",
                          "--expect-lossless",
                          NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 0);
    assert_int_equal((long)fs_json_need(r.json, "published"), 300);
    assert_int_equal((long)fs_json_need(r.json, "deliveries"), 3000);
    assert_int_equal((long)fs_json_need(r.json, "lost"), 0);
    assert_int_equal((long)fs_json_need(r.json, "latency_us.samples"), 900);
    /* A driver figure per latency sample, a publisher lateness per message sent at the rate. */
    assert_int_equal((long)fs_json_need(r.json, "driver_overhead_us.samples"), 900);
    assert_true(fs_json_need(r.json, "driver_overhead_us.max") <=
                fs_json_need(r.json, "latency_us.max") + 1);
    assert_int_equal((long)fs_json_need(r.json, "pub_lag_us.samples"), 300);
    assert_true(fs_json_need(r.json, "pub_lag_us.p50") >= 0);
    assert_true(fs_json_need(r.json, "config.spin_us") == 200);
    /* 300 messages at 1000/s take at least 0.299 s. */
    assert_true(fs_json_need(r.json, "window_s") >= 0.29);
    fs_flood_free(&r);
}

/* Counts a string in s. */
static int occurrences(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Every read mode of the byte-counting subscribers delivers everything, and the result says
 * which mode ran (top-level "read_mode" and config.read_mode), with the SO_RCVLOWAT it used and
 * the summary line naming it. 7 of 8 subscribers count bytes, over two threads, once with
 * multishot reads and once with lazy ones (--read-interval), so both paths go through each mode.
 * The warm-up runs at full speed: a large --max-queue keeps this a counting test (see
 * test_line_exact_counts). */
static void test_read_modes(void **state)
{
    (void)state;
    static const struct {
        const char *args[4];
        const char *mode;
        long rcvlowat;
        bool copies;
    } cases[] = {
        {{NULL}, "copy", 0, true}, /* the default */
        {{"--read-mode", "copy", NULL}, "copy", 0, true},
        {{"--copy-reads", "--rcvlowat", "0", NULL}, "copy", 0, true}, /* the old spelling */
        {{"--read-mode", "trunc", NULL}, "trunc", 0, false},
        {{"--read-mode", "lowat", NULL}, "lowat", 65536, true},
        {{"--read-mode", "lowat", "--rcvlowat", "4K"}, "lowat", 4096, true},
    };
    struct rc_server *s = rc_start("-q", "--max-queue", "256M", NULL);
    char port[16];
    port_str(port, sizeof(port), s->port);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int lazy = 0; lazy < 2; lazy++) {
            const char *args[32] = {
                "--proto",   "line", "--port",           port,  "--subs",   "8",   "--pubs",   "2",
                "--count",   "3000", "--size",           "100", "--warmup", "0.1", "--verify", "1",
                "--threads", "2",    "--expect-lossless"};
            size_t n = 19;
            if (lazy) {
                args[n++] = "--read-interval";
                args[n++] = "2000";
            }
            for (size_t k = 0; k < 4 && cases[i].args[k]; k++)
                args[n++] = cases[i].args[k];
            args[n] = NULL;
            struct fs_flood r;
            fs_flood_run(&r, args);
            assert_int_equal(r.code, 0);
            check_lossless(r.json, 2, 3000, 8, 100, false);
            char want[64];
            snprintf(want, sizeof(want), "\"read_mode\": \"%s\"", cases[i].mode);
            if (occurrences(r.json, want) != 2 || occurrences(r.json, "\"read_mode\"") != 2) {
                print_error("case %zu: want %s at the top and in config: %s\n", i, want, r.json);
                fail();
            }
            assert_int_equal((long)fs_json_need(r.json, "config.rcvlowat"), cases[i].rcvlowat);
            assert_non_null(
                strstr(r.json, cases[i].copies ? "\"copy_reads\": true" : "\"copy_reads\": false"));
            assert_non_null(strstr(r.err, cases[i].mode));
            fs_flood_free(&r);
        }
    }
}

/* The rarer outputs in one run: --repeat (medians under the usual keys, every run, the spread),
 * --slow-subs and --churn (their own objects), --hist (HdrHistogram text) and --server-pid. */
static void test_repeat_slow_churn_hist(void **state)
{
    (void)state;
    struct rc_server *s = rc_start("-q", NULL);
    char port[16], pid[16], hist[256];
    port_str(port, sizeof(port), s->port);
    snprintf(pid, sizeof(pid), "%d", (int)s->pid);
    close(sp_tmp_file(hist, sizeof(hist), "hist"));
    const char *args[] = {"--port",   port,   "--subs",       "4",   "--verify",          "2",
                          "--rate",   "2000", "--duration",   "0.3", "--warmup",          "0.1",
                          "--repeat", "2",    "--slow-subs",  "1",   "--churn",           "20",
                          "--hist",   hist,   "--server-pid", pid,   "--expect-lossless", NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 0);
    const char *j = r.json;
    assert_int_equal((long)fs_json_need(j, "lost"), 0);
    assert_true(fs_json_need(j, "deliveries") > 0);
    assert_true(sp_json_has(j, "runs"));
    double lo = fs_json_need(j, "spread.deliveries_per_s.min");
    double hi = fs_json_need(j, "spread.deliveries_per_s.max");
    double med = fs_json_need(j, "deliveries_per_s");
    assert_true(lo <= hi && lo * 0.999 <= med && med <= hi * 1.001);
    assert_true(fs_json_need(j, "spread.driver_overhead_p99.min") <=
                fs_json_need(j, "spread.driver_overhead_p99.max"));
    assert_true(sp_json_has(j, "spread.flood_spin_cpu.max"));
    assert_int_equal((long)fs_json_need(j, "slow_subs.count"), 1);
    assert_true(sp_json_has(j, "slow_subs.disconnected"));
    assert_true(fs_json_need(j, "churn.rate") == 20);
    assert_true(fs_json_need(j, "server_rss_kb.end") > 0);
    assert_true(fs_json_need(j, "server_fds.start") > 0);
    assert_non_null(strstr(r.err, "median of 2 runs"));
    char *h = sp_slurp(hist);
    unlink(hist);
    assert_non_null(h);
    assert_non_null(strstr(h, "Percentile"));
    assert_non_null(strstr(h, "#[Mean"));
    free(h);
    fs_flood_free(&r);
}

/* Bad arguments: one line on stderr, exit 2, no result. */
static void test_bad_arguments(void **state)
{
    (void)state;
    static const char *const cases[][5] = {
        {"--proto", "carrier-pigeon", NULL},
        {"--subs", "-1", NULL},
        {"--subs", "many", NULL},
        {"--size", "10", NULL}, /* below the 33-byte header */
        {"--rate", "-5", NULL},
        {"--frobnicate", NULL},
        {"--port", "0", NULL},
        {"--port", "70000", NULL},
        {"--verify", "x", NULL},
        {"--duration", "abc", NULL},
        {"--read-mode", "mmap", NULL},
        {"--read-mode", "lowat", "--rcvlowat", "0"},
        {"--copy-reads", "--read-mode", "trunc", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fs_flood r;
        fs_flood_run(&r, cases[i]);
        if (r.code != 2 || fs_count_lines(r.err) != 1 || r.json) {
            print_error("case %zu (%s %s): exit %d, stderr \"%s\"\n", i, cases[i][0],
                        cases[i][1] ? cases[i][1] : "", r.code, r.err ? r.err : "");
            fail();
        }
        assert_true(r.out == NULL || r.out[0] == 0);
        assert_non_null(strstr(r.err, "flood"));
        fs_flood_free(&r);
    }
    /* An option missing its value (the last argument). */
    const char *argv[] = {fs_flood_bin(), "--subs", "2", "--port", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sp_run(argv, FS_RUN_MS, &out, &err), 2);
    assert_int_equal(fs_count_lines(err), 1);
    assert_true(out && !*out);
    free(out);
    free(err);
}

/* Nothing listens: exit 1 with one clear line naming the address. */
static void test_connection_refused(void **state)
{
    (void)state;
    /* A bound socket that does not listen refuses connections, and nobody else can take the
     * port meanwhile. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    char port[16];
    port_str(port, sizeof(port), ntohs(sin.sin_port));
    const char *args[] = {"--port", port, "--subs", "2", "--pubs", "1", "--count", "10", NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    close(fd);
    assert_int_equal(r.code, 1);
    assert_non_null(r.err);
    assert_non_null(strstr(r.err, "refused"));
    assert_non_null(strstr(r.err, port));
    fs_flood_free(&r);
}

int main(void)
{
    fs_flood_bin();
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_line_exact_counts, rc_teardown),
        cmocka_unit_test_teardown(test_len32_exact_counts, rc_teardown),
        cmocka_unit_test_teardown(test_line_byte_counting, rc_teardown),
        cmocka_unit_test_teardown(test_fixed_rate, rc_teardown),
        cmocka_unit_test_teardown(test_full_speed_paced_lossless, rc_teardown),
        cmocka_unit_test_teardown(test_small_queue_full_speed, rc_teardown),
        cmocka_unit_test_teardown(test_read_modes, rc_teardown),
        cmocka_unit_test_teardown(test_repeat_slow_churn_hist, rc_teardown),
        cmocka_unit_test_teardown(test_bad_arguments, rc_teardown),
        cmocka_unit_test_teardown(test_connection_refused, rc_teardown),
    };
    return cmocka_run_group_tests_name("flood_ringcast", tests, NULL, NULL);
}
