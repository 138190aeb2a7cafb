/* Signals: SIGTERM/SIGINT drain queued output and exit 0; a second signal cuts the drain short;
 * SIGHUP (a reload) never stops the relay. */
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

#define BACKLOG_BYTES (2u * 1024 * 1024)

struct backlog {
    char *data;
    size_t len;
};

/*
 * Publishes about 2 MiB from pub while fast reads all of it (so the server has processed every
 * frame), leaving it queued for stuck, which reads nothing.
 */
static void make_backlog(int pub, int fast, struct backlog *bl)
{
    bl->data = malloc(BACKLOG_BYTES);
    bl->len = 0;
    for (uint32_t i = 0; bl->len + 1024 <= BACKLOG_BYTES; i++)
        bl->len += rc_make_line(bl->data + bl->len, 1024, "q", i);
    struct rc_flow f[2] = {
        {.fd = pub, .out = (const uint8_t *)bl->data, .out_len = bl->len},
        {.fd = fast, .in = malloc(bl->len), .in_len = bl->len},
    };
    assert_true(rc_transfer(f, 2, RC_IO_MS));
    assert_memory_equal(f[1].in, bl->data, bl->len);
    free(f[1].in);
}

static void expect_exit0(struct rc_server *s, int timeout_ms)
{
    int st = rc_wait_exit(s, timeout_ms);
    if (st == -1) {
        rc_dump(s);
        fail_msg("the server did not exit within %d ms", timeout_ms);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("the server ended with status 0x%x, want exit 0", st);
    }
}

/* After SIGTERM a reader that only then starts reading still gets everything sent before. */
static void test_signals_sigterm_flushes(void **state)
{
    struct rc_server *s = rc_start("--drain-timeout", "20", NULL);
    int pub = rc_connect(s), fast = rc_connect(s);
    int stuck = rc_connect_buf(s, 4096);
    struct backlog bl;
    make_backlog(pub, fast, &bl);

    rc_signal(s, SIGTERM);
    char *got = malloc(bl.len + 1);
    size_t n = rc_recv_until_eof(stuck, got, bl.len + 1, RC_IO_MS);
    if (n == (size_t)-1)
        fail_msg("the server did not close the draining client");
    if (n != bl.len || memcmp(got, bl.data, bl.len) != 0) {
        rc_wait_exit(s, RC_WAIT_MS);
        rc_dump(s);
        fail_msg("the draining client got %zu bytes, want the %zu queued", n, bl.len);
    }
    expect_exit0(s, RC_WAIT_MS);
    /* The other clients were closed too. */
    assert_int_equal(rc_recv_until_eof(fast, NULL, 0, RC_IO_MS), 0);
    free(got);
    free(bl.data);
}

/* SIGINT does the same. */
static void test_signals_sigint(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    rc_send_str(a, "last words\n");
    rc_expect_str(b, "last words\n");
    rc_signal(s, SIGINT);
    assert_int_equal(rc_recv_until_eof(b, NULL, 0, RC_IO_MS), 0);
    expect_exit0(s, RC_WAIT_MS);
}

/* A client that never reads cannot hold the exit beyond --drain-timeout; it is warned about. */
static void test_signals_drain_timeout(void **state)
{
    struct rc_server *s = rc_start("--drain-timeout", "0.5", NULL);
    int pub = rc_connect(s), fast = rc_connect(s);
    rc_connect_buf(s, 4096);
    struct backlog bl;
    make_backlog(pub, fast, &bl);
    size_t err0 = rc_err_lines(s);

    int64_t t0 = rc_now_ms();
    rc_signal(s, SIGTERM);
    expect_exit0(s, RC_WAIT_MS);
    int64_t took = rc_now_ms() - t0;
    if (took > 8000)
        fail_msg("exit took %lld ms with --drain-timeout 0.5", (long long)took);
    if (rc_err_lines(s) <= err0)
        fail_msg("no warning on stderr about the output that could not be flushed");
    free(bl.data);
}

/* A second signal ends the drain at once (a long --drain-timeout is not waited out). */
static void test_signals_second_signal(void **state)
{
    struct rc_server *s = rc_start("--drain-timeout", "120", NULL);
    int pub = rc_connect(s), fast = rc_connect(s);
    rc_connect_buf(s, 4096);
    struct backlog bl;
    make_backlog(pub, fast, &bl);

    int64_t t0 = rc_now_ms();
    rc_signal(s, SIGTERM);
    /* A different signal, so the two cannot merge into one pending signal. */
    rc_signal(s, SIGINT);
    expect_exit0(s, 30000);
    int64_t took = rc_now_ms() - t0;
    if (took > 10000)
        fail_msg("exit took %lld ms after two signals", (long long)took);
    free(bl.data);
}

/* SIGPIPE never kills the server. */
static void test_signals_sigpipe(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    for (int i = 0; i < 3; i++)
        rc_signal(s, SIGPIPE);
    rc_send_str(a, "alive\n");
    rc_expect_str(b, "alive\n");
    assert_true(rc_alive(s));
}

/* SIGHUP is logged and the relay goes on: it keeps relaying, accepts, and later exits 0. */
static void test_signals_sighup(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    size_t mark = rc_log_mark(s);
    rc_signal(s, SIGHUP);
    assert_true(rc_log_wait(s, mark, "SIGHUP: nothing to reload.", RC_WAIT_MS));
    rc_signal(s, SIGHUP);
    assert_int_equal(rc_log_wait_count(s, mark, "SIGHUP: nothing to reload.", 2, RC_WAIT_MS), 2);
    char line[256];
    assert_true(rc_log_find(s, mark, "SIGHUP", line, sizeof(line)));
    assert_string_equal(line, "SIGHUP: nothing to reload.");

    rc_send_str(a, "after the reload\n");
    rc_expect_str(b, "after the reload\n");
    int c = rc_connect(s);
    rc_send_str(c, "newcomer\n");
    rc_expect_str(a, "newcomer\n");
    rc_expect_str(b, "newcomer\n");

    rc_signal(s, SIGTERM);
    expect_exit0(s, RC_WAIT_MS);
}

/* A SIGHUP during the drain is not the second signal that cuts it short. */
static void test_signals_sighup_during_drain(void **state)
{
    struct rc_server *s = rc_start("--drain-timeout", "120", NULL);
    int pub = rc_connect(s), fast = rc_connect(s);
    int stuck = rc_connect_buf(s, 4096);
    struct backlog bl;
    make_backlog(pub, fast, &bl);

    size_t mark = rc_log_mark(s);
    rc_signal(s, SIGTERM);
    assert_true(rc_log_wait(s, mark, "Shutting down", RC_WAIT_MS));
    rc_signal(s, SIGHUP);
    assert_true(rc_log_wait(s, mark, "SIGHUP: nothing to reload.", RC_WAIT_MS));
    char *got = malloc(bl.len + 1);
    size_t n = rc_recv_until_eof(stuck, got, bl.len + 1, RC_IO_MS);
    if (n != bl.len || memcmp(got, bl.data, bl.len) != 0) {
        rc_wait_exit(s, RC_WAIT_MS);
        rc_dump(s);
        fail_msg("the draining client got %zu bytes, want the %zu queued", n, bl.len);
    }
    expect_exit0(s, RC_WAIT_MS);
    free(got);
    free(bl.data);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_signals_sigterm_flushes, rc_teardown),
        cmocka_unit_test_teardown(test_signals_sigint, rc_teardown),
        cmocka_unit_test_teardown(test_signals_drain_timeout, rc_teardown),
        cmocka_unit_test_teardown(test_signals_second_signal, rc_teardown),
        cmocka_unit_test_teardown(test_signals_sigpipe, rc_teardown),
        cmocka_unit_test_teardown(test_signals_sighup, rc_teardown),
        cmocka_unit_test_teardown(test_signals_sighup_during_drain, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
