/*
 * Kernel feature fallbacks (RINGCAST_DISABLE), zero-copy sends, IPv6: the same relay guarantees
 * hold on every path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

#define SENDERS 2
#define RECEIVERS 8
#define FRAMES 150

/* Checks a stream of "wK-NNNNNNNN ...\n" frames: each sender's frames complete and in order. */
static void check_merge(const char *buf, size_t len, const char *who)
{
    uint32_t next[SENDERS] = {0};
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        int k = -1;
        unsigned seq = 0;
        if (!nl || sscanf(buf + pos, "w%d-%8u ", &k, &seq) != 2 || k < 0 || k >= SENDERS ||
            seq != next[k])
            fail_msg("%s: bad or out-of-order frame at byte %zu", who, pos);
        next[k]++;
        pos = (size_t)(nl - buf) + 1;
    }
    for (int k = 0; k < SENDERS; k++)
        if (next[k] != FRAMES)
            fail_msg("%s: %u of %u frames from sender %d", who, next[k], FRAMES, k);
}

/*
 * A workout of the relay: two senders with frames of up to max_len bytes to eight receivers
 * (identical order everywhere), a reader reset while megabytes are queued for it, and churn;
 * afterwards no descriptor is left behind.
 */
static void workout(struct rc_server *s, size_t max_len)
{
    int fds[SENDERS + RECEIVERS];
    rc_connect_many(s, fds, SENDERS + RECEIVERS);
    int baseline = rc_fd_count(s);

    char *out[SENDERS];
    size_t out_len[SENDERS] = {0}, total = 0;
    for (int k = 0; k < SENDERS; k++) {
        out[k] = malloc(FRAMES * (max_len + 32));
        char prefix[8];
        snprintf(prefix, sizeof(prefix), "w%d-", k);
        for (uint32_t i = 0; i < FRAMES; i++)
            out_len[k] += rc_make_line(out[k] + out_len[k], 20 + (i * 7919 + (uint32_t)k) % max_len,
                                       prefix, i);
        total += out_len[k];
    }
    struct rc_flow flows[SENDERS + RECEIVERS];
    memset(flows, 0, sizeof(flows));
    for (int i = 0; i < SENDERS + RECEIVERS; i++) {
        flows[i].fd = fds[i];
        flows[i].in_len = i < SENDERS ? total - out_len[i] : total;
        flows[i].in = malloc(flows[i].in_len);
        if (i < SENDERS) {
            flows[i].out = (const uint8_t *)out[i];
            flows[i].out_len = out_len[i];
        }
    }
    assert_true(rc_transfer(flows, SENDERS + RECEIVERS, RC_IO_MS * 2));
    for (int i = SENDERS; i < SENDERS + RECEIVERS; i++) {
        check_merge((const char *)flows[i].in, total, "receiver");
        if (memcmp(flows[i].in, flows[SENDERS].in, total) != 0)
            fail_msg("receivers disagree on the order");
    }
    /* With two senders, each sender's stream is exactly the other's frames. */
    assert_memory_equal(flows[0].in, out[1], out_len[1]);
    assert_memory_equal(flows[1].in, out[0], out_len[0]);
    for (int i = 0; i < SENDERS + RECEIVERS; i++)
        free(flows[i].in);
    for (int k = 0; k < SENDERS; k++)
        free(out[k]);

    /* A reader that stops reading and then resets with ~2 MiB queued for it. */
    int stuck = rc_connect_buf(s, 4096);
    size_t len = 0, cap = 2u * 1024 * 1024;
    char *data = malloc(cap);
    for (uint32_t i = 0; len + 4096 <= cap; i++)
        len += rc_make_line(data + len, 4096, "z", i);
    struct rc_flow f[1 + RECEIVERS];
    memset(f, 0, sizeof(f));
    f[0].fd = fds[0];
    f[0].out = (const uint8_t *)data;
    f[0].out_len = len;
    f[0].in = malloc(1);
    for (int i = 1; i <= RECEIVERS; i++) {
        f[i].fd = fds[SENDERS + i - 1];
        f[i].in = malloc(len);
        f[i].in_len = len;
    }
    assert_true(rc_transfer(f, 1 + RECEIVERS, RC_IO_MS * 2));
    for (int i = 1; i <= RECEIVERS; i++) {
        assert_memory_equal(f[i].in, data, len);
        free(f[i].in);
    }
    free(f[0].in);
    /* fds[1] got the stream too; read it off so it is not left pending. */
    char *sink = malloc(len);
    const char *why;
    assert_int_equal(rc_recv_exact(fds[1], sink, len, RC_IO_MS, &why), len);
    free(sink);
    size_t mark = rc_log_mark(s);
    int ps = rc_reset(stuck);
    rc_wait_client_log(s, mark, ps, "disconnected");
    free(data);

    /* Churn. */
    for (int i = 0; i < 40; i++) {
        int c = rc_connect_raw(s, 0);
        if (i % 2)
            rc_reset(c);
        else
            rc_close(c);
    }
    int n = rc_wait_fd_count(s, baseline, RC_WAIT_MS);
    if (n != baseline)
        fail_msg("%d descriptors open after the workout, %d before", n, baseline);

    rc_send_str(fds[1], "end\n");
    rc_expect_str(fds[2], "end\n");
    for (int i = 0; i < SENDERS + RECEIVERS; i++)
        rc_close(fds[i]);
}

/* Stops a server the test is done with: SIGTERM with no clients left, exit 0. */
static void stop(struct rc_server *s)
{
    rc_signal(s, SIGTERM);
    int st = rc_wait_exit(s, RC_WAIT_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("server stopped with status 0x%x, want exit 0", st);
    }
}

static struct rc_server *start_disabled(const char *features, const char *arg1, const char *arg2)
{
    char env[256];
    snprintf(env, sizeof(env), "RINGCAST_DISABLE=%s", features);
    const char *envp[] = {env, NULL};
    const char *argv[] = {arg1, arg2, NULL};
    struct rc_opts o = {.argv = argv, .env = envp};
    return rc_start_ex(&o);
}

/* Every optional feature missing at once: the fallbacks carry the whole relay. */
static void test_features_all_fallbacks(void **state)
{
    struct rc_server *s = start_disabled(
        "single_issuer,defer_taskrun,coop_taskrun,send_zc,register_ring_fd,fixed_buffers,"
        "multishot_accept",
        NULL, NULL);
    workout(s, 20000);
}

/* Each optional feature missing on its own. */
static void test_features_each_fallback(void **state)
{
    static const char *const features[] = {
        "single_issuer",    "defer_taskrun", "coop_taskrun",     "send_zc",
        "register_ring_fd", "fixed_buffers", "multishot_accept", "defer_taskrun,single_issuer",
    };
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
        struct rc_server *s = start_disabled(features[i], NULL, NULL);
        workout(s, 3000);
        stop(s);
    }
}

/* A required feature missing: exit 1 naming it and the kernel version it needs. */
static void test_features_required_missing(void **state)
{
    const char *env[] = {"RINGCAST_DISABLE=recv_multishot", NULL};
    struct rc_opts o = {.env = env};
    char *out, *err;
    int st = rc_run(&o, 10000, &out, &err);
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st) != 1 || !strstr(err, "multishot recv") || !strstr(err, "6.0"))
        fail_msg("RINGCAST_DISABLE=recv_multishot: exit %d, stderr \"%s\"", WEXITSTATUS(st), err);
    assert_null(strstr(out, "Server started"));
    free(out);
    free(err);
}

/* --zerocopy on (the kernel copies on loopback): still exact, resets with sends in flight too. */
static void test_features_zerocopy_on(void **state)
{
    struct rc_server *s = rc_start("--zerocopy", "on", "--zc-threshold", "1", NULL);
    workout(s, 60000);
}

/* --zerocopy off and auto with a low threshold. */
static void test_features_zerocopy_modes(void **state)
{
    struct rc_server *s = rc_start("--zerocopy", "off", NULL);
    workout(s, 20000);
    stop(s);
    s = rc_start("--zerocopy", "auto", "--zc-threshold", "4K", NULL);
    workout(s, 20000);
}

/* IPv6: --address ::1 listens there and logs [::1]:PORT. */
static void test_features_ipv6(void **state)
{
    if (!rc_have_ipv6())
        skip();
    struct rc_server *s = rc_start("--address", "::1", NULL);
    assert_string_equal(s->host, "::1");
    char line[128], want[128];
    snprintf(want, sizeof(want), "Server started at: [::1]:%d", s->port);
    assert_true(rc_log_find(s, 0, "Server started at: ", line, sizeof(line)));
    assert_string_equal(line, want);

    int idle = rc_fd_count(s);
    size_t mark = rc_log_mark(s);
    int a = rc_connect(s);
    snprintf(want, sizeof(want), "[::1]:%d connected.", rc_port_of(a));
    assert_true(rc_log_find(s, mark, want, line, sizeof(line)));
    assert_string_equal(line, want);
    rc_close(a);
    /* The relay closes that client's descriptor after its last completion: the workout counts
     * descriptors from a baseline, which must not include it (CI once caught 18 before, 17 after).
     */
    int n = rc_wait_fd_count(s, idle, RC_WAIT_MS);
    if (n != idle)
        fail_msg("%d descriptors open after one client left, %d before it came", n, idle);
    workout(s, 3000);
}

/* "::" listens dual-stack: IPv4 and IPv6 clients talk to each other. */
static void test_features_dual_stack(void **state)
{
    if (!rc_have_ipv6())
        skip();
    FILE *f = fopen("/proc/sys/net/ipv6/bindv6only", "re");
    int v6only = 0;
    if (f) {
        if (fscanf(f, "%d", &v6only) != 1)
            v6only = 0;
        fclose(f);
    }
    if (v6only)
        skip();
    struct rc_server *s = rc_start("--address", "::", NULL);
    size_t mark = rc_log_mark(s);
    int v4 = rc_connect_addr(s, "127.0.0.1", 0);
    rc_wait_client_log(s, mark, rc_port_of(v4), "connected.");
    int v6 = rc_connect_addr(s, "::1", 0);
    rc_wait_client_log(s, mark, rc_port_of(v6), "connected.");
    rc_send_str(v4, "from v4\n");
    rc_expect_str(v6, "from v4\n");
    rc_send_str(v6, "from v6\n");
    rc_expect_str(v4, "from v6\n");
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_features_all_fallbacks, rc_teardown),
        cmocka_unit_test_teardown(test_features_each_fallback, rc_teardown),
        cmocka_unit_test_teardown(test_features_required_missing, rc_teardown),
        cmocka_unit_test_teardown(test_features_zerocopy_on, rc_teardown),
        cmocka_unit_test_teardown(test_features_zerocopy_modes, rc_teardown),
        cmocka_unit_test_teardown(test_features_ipv6, rc_teardown),
        cmocka_unit_test_teardown(test_features_dual_stack, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
