/* flood against the batching baseline (bench/baseline, $BASELINE_BIN), the relay every benchmark
 * runs beside ringcast: its figures only mean something if it relays everything, in order, like
 * ringcast does. Exact counts in both framings with every subscriber verified, its start line and
 * exit status, and --max-frame costing a len32 sender its connection (the frames before still
 * relayed). */
#include "flood_support.h"

#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

static pid_t server_pid;
static int server_port;
static int server_out = -1; /* its stdout and stderr: kept open, so that it can still write */

static const char *baseline_bin(void)
{
    const char *b = getenv("BASELINE_BIN");
    if (!b || !*b) {
        fprintf(stderr, "flood_baseline: BASELINE_BIN is not set\n");
        exit(1);
    }
    return b;
}

/* Starts the baseline with extra options (NULL-terminated) and reads its port from the start
 * line, as benchmarks do. */
static void start_baseline(const char *const *opts)
{
    const char *argv[16] = {baseline_bin(), "--port", "0"};
    size_t n = 3;
    for (size_t i = 0; opts && opts[i] && n < 15; i++)
        argv[n++] = opts[i];
    argv[n] = NULL;
    int fd;
    server_pid = fs_spawn(argv, NULL, &fd);
    server_out = fd;
    char line[256];
    size_t len = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (len < sizeof(line) - 1 && !memchr(line, '\n', len) && poll(&p, 1, FS_START_MS) > 0) {
        ssize_t r = read(fd, line + len, sizeof(line) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    line[len] = 0;
    const char *prefix = "Server started at: 127.0.0.1:";
    if (strncmp(line, prefix, strlen(prefix)) != 0 || line[len - 1] != '\n') {
        print_error("baseline did not start: \"%s\"\n", line);
        fail(); /* the teardown stops it */
    }
    server_port = atoi(line + strlen(prefix));
    assert_true(server_port > 0 && server_port < 65536);
}

/* Every test stops the baseline with SIGTERM: it must exit 0, having written nothing more (a
 * sanitizer's report, say) after its start line. */
static int stop_baseline(void **state)
{
    (void)state;
    int code = server_pid > 0 ? sp_stop(server_pid) : 0;
    char rest[4096];
    ssize_t n = server_out >= 0 ? read(server_out, rest, sizeof(rest) - 1) : 0;
    if (n > 0) {
        rest[n] = 0;
        print_error("baseline wrote after its start line:\n%s\n", rest);
    }
    if (server_out >= 0)
        close(server_out);
    server_pid = 0;
    server_out = -1;
    assert_int_equal(code, 0);
    assert_true(n <= 0);
    return 0;
}

/* 2 publishers x 500 messages x 20 subscribers, all verified: exactly 20,000 deliveries. No
 * warm-up: it runs the publishers at full speed, and the baseline does not pace them as ringcast
 * does, so 20 verifying subscribers in one flood thread can fall more than --max-queue behind and
 * be cut, by design. 500 messages (32 KiB a publisher) are far from that. */
static void exact_run(const char *proto)
{
    const char *opts[] = {"--framing", proto, NULL};
    start_baseline(opts);
    char port[16], pid[16];
    snprintf(port, sizeof(port), "%d", server_port);
    snprintf(pid, sizeof(pid), "%d", (int)server_pid);
    const char *args[] = {"--proto",
                          proto,
                          "--port",
                          port,
                          "--subs",
                          "20",
                          "--pubs",
                          "2",
                          "--count",
                          "500",
                          "--size",
                          "64",
                          "--warmup",
                          "0",
                          "--verify",
                          "20",
                          "--server-pid",
                          pid,
                          "--expect-lossless",
                          NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 0);
    const char *j = r.json;
    assert_non_null(j);
    assert_int_equal((long)fs_json_need(j, "published"), 1000);
    assert_int_equal((long)fs_json_need(j, "expected_deliveries"), 20000);
    assert_int_equal((long)fs_json_need(j, "deliveries"), 20000);
    assert_int_equal((long)fs_json_need(j, "lost"), 0);
    assert_int_equal((long)fs_json_need(j, "duplicated"), 0);
    assert_int_equal((long)fs_json_need(j, "reordered"), 0);
    assert_int_equal((long)fs_json_need(j, "corrupt"), 0);
    assert_int_equal((long)fs_json_need(j, "errors"), 0);
    assert_int_equal((long)fs_json_need(j, "latency_us.samples"), 20000);
    double scpu = fs_json_need(j, "server_cpu");
    assert_true(scpu >= 0 && scpu <= 64);
    fs_flood_free(&r);
}

static void test_line_exact_counts(void **state)
{
    (void)state;
    exact_run("line");
}

static void test_len32_exact_counts(void **state)
{
    (void)state;
    exact_run("len32");
}

static int connect_baseline(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    struct timeval tv = {.tv_sec = FS_START_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads exactly n bytes (the receive timeout bounds the wait). */
static void read_exactly(int fd, char *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = recv(fd, buf + got, n - got, 0);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

/* A len32 header over --max-frame closes its sender; the whole frame before it in the same
 * write still reaches the others, and the relay goes on serving them. */
static void test_len32_max_frame(void **state)
{
    (void)state;
    const char *opts[] = {"--framing", "len32", "--max-frame", "16", NULL};
    start_baseline(opts);
    /* The relay accepts in connection order and reads a client only once accepted: pub is in
     * before anything sub sends is read, and once pub has sub's ping, sub is in too. */
    int pub = connect_baseline();
    int sub = connect_baseline();
    const char ping[] = "\0\0\0\4ping";
    char got[64];
    assert_int_equal(send(sub, ping, 8, 0), 8);
    read_exactly(pub, got, 8);
    assert_memory_equal(got, ping, 8);

    const char bad[] = "\0\0\0\5hello\0\0\0\21"; /* then a 17-byte header */
    assert_int_equal(send(pub, bad, sizeof(bad) - 1, 0), (ssize_t)sizeof(bad) - 1);
    read_exactly(sub, got, 9);
    assert_memory_equal(got, "\0\0\0\5hello", 9);
    assert_true(recv(pub, got, sizeof(got), 0) <= 0); /* closed: EOF or a reset */

    /* Still serving: a new client and the subscriber reach each other. */
    int pub2 = connect_baseline();
    assert_int_equal(send(pub2, ping, 8, 0), 8);
    read_exactly(sub, got, 8);
    assert_memory_equal(got, ping, 8);
    assert_int_equal(send(sub, "\0\0\0\3bye", 7, 0), 7);
    read_exactly(pub2, got, 7);
    assert_memory_equal(got, "\0\0\0\3bye", 7);
    close(pub2);
    close(pub);
    close(sub);
}

/* Bad usage: one line on stderr, exit 2. */
static void test_bad_usage(void **state)
{
    (void)state;
    static const char *const cases[][3] = {{"--framing", "xml", NULL},
                                           {"--max-queue", "0", NULL},
                                           {"--port", "70000", NULL},
                                           {"--address", "nowhere", NULL},
                                           {"--frobnicate", NULL, NULL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[] = {baseline_bin(), cases[i][0], cases[i][1], NULL};
        char *out = NULL, *err = NULL;
        assert_int_equal(sp_run(argv, FS_RUN_MS, &out, &err), 2);
        assert_int_equal(fs_count_lines(err), 1);
        assert_true(out && !*out);
        free(out);
        free(err);
    }
}

int main(void)
{
    fs_flood_bin();
    baseline_bin();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_line_exact_counts, stop_baseline),
        cmocka_unit_test_teardown(test_len32_exact_counts, stop_baseline),
        cmocka_unit_test_teardown(test_len32_max_frame, stop_baseline),
        cmocka_unit_test(test_bad_usage),
    };
    return cmocka_run_group_tests_name("flood_baseline", tests, NULL, NULL);
}
