/* Resets, connect/close churn: the server survives, others are unaffected, no fd is leaked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Waits until the server's descriptor count is back to baseline (bounded) and checks it. */
static void expect_fds(struct rc_server *s, int baseline)
{
    int n = rc_wait_fd_count(s, baseline, RC_WAIT_MS);
    if (n != baseline) {
        rc_dump(s);
        fail_msg("the server has %d descriptors open, %d before (leak?)", n, baseline);
    }
}

/* Waits until every client the server logged as connected after mark is logged as gone. */
static void wait_all_gone(struct rc_server *s, size_t mark)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    size_t in, out;
    do {
        in = rc_log_count(s, mark, " connected.");
        out = rc_log_count(s, mark, " disconnected");
        if (in == out)
            return;
        struct pollfd none = {.fd = -1};
        poll(&none, 1, 20);
    } while (rc_now_ms() < deadline);
    rc_dump(s);
    fail_msg("%zu clients connected but only %zu logged as disconnected", in, out);
}

/* A reset in the middle of a frame costs nothing but that client. */
static void test_churn_reset_mid_frame(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int b = rc_connect(s), c = rc_connect(s);
    int baseline = rc_fd_count(s);
    int a = rc_connect(s);
    size_t mark = rc_log_mark(s);
    rc_send_str(a, "complete\nhalf a fra");
    rc_expect_str(b, "complete\n");
    int pa = rc_reset(a);
    rc_wait_client_log(s, mark, pa, "disconnected");
    rc_send_str(b, "next\n");
    rc_expect_str(c, "complete\nnext\n");
    expect_fds(s, baseline);
    assert_true(rc_alive(s));
}

/* A reset while the server has a backlog of sends for that client (socket buffers full). */
static void test_churn_reset_while_sending(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int pub = rc_connect(s), fast = rc_connect(s);
    int baseline = rc_fd_count(s);
    int stuck = rc_connect_buf(s, 4096);

    size_t len = 0, cap = 4u * 1024 * 1024;
    char *data = malloc(cap);
    for (uint32_t i = 0; len + 1000 <= cap; i++)
        len += rc_make_line(data + len, 1000, "r", i);
    struct rc_flow f[2] = {
        {.fd = pub, .out = (const uint8_t *)data, .out_len = len},
        {.fd = fast, .in = malloc(len), .in_len = len},
    };
    assert_true(rc_transfer(f, 2, RC_IO_MS));
    assert_memory_equal(f[1].in, data, len);

    /* The stuck reader now has megabytes pending; it vanishes with a reset. */
    size_t mark = rc_log_mark(s);
    int ps = rc_reset(stuck);
    rc_wait_client_log(s, mark, ps, "disconnected");
    rc_send_str(pub, "after\n");
    rc_expect_str(fast, "after\n");
    expect_fds(s, baseline);
    free(f[1].in);
    free(data);
}

/*
 * Hundreds of clients that connect and leave in every way (close, reset, after a frame, inside a
 * frame, having read nothing): all are logged out, the descriptors return to the baseline, and
 * the server still relays.
 */
static void test_churn_connect_close(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    int baseline = rc_fd_count(s);
    size_t mark = rc_log_mark(s);
    int fds[50];
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < 50; i++)
            fds[i] = rc_connect_raw(s, 0);
        for (int i = 0; i < 50; i++) {
            switch ((i + round) % 5) {
            case 0:
                rc_close(fds[i]);
                break;
            case 1:
                rc_reset(fds[i]);
                break;
            case 2:
                rc_send_str(fds[i], "churn frame\n");
                rc_close(fds[i]);
                break;
            case 3:
                rc_send_str(fds[i], "churn partial");
                rc_reset(fds[i]);
                break;
            default:
                rc_send_str(fds[i], "churn partial");
                rc_close(fds[i]);
                break;
            }
        }
    }
    wait_all_gone(s, mark);
    expect_fds(s, baseline);

    /* a and b got whatever complete churn frames were relayed, then this one, intact. */
    rc_send_str(a, "survived\n");
    char buf[65536];
    size_t got = 0;
    int64_t deadline = rc_now_ms() + RC_IO_MS;
    while (rc_now_ms() < deadline && got < sizeof(buf)) {
        struct pollfd p = {.fd = b, .events = POLLIN};
        poll(&p, 1, 100);
        ssize_t n = rc_recv_now(b, buf + got, sizeof(buf) - got);
        assert_true(n >= 0);
        got += (size_t)n;
        if (got >= 9 && memcmp(buf + got - 9, "survived\n", 9) == 0)
            break;
    }
    for (size_t pos = 0; pos + 9 < got; pos += 12) {
        if (memcmp(buf + pos, "churn frame\n", 12) != 0)
            fail_msg("unexpected bytes at %zu: %.20s", pos, buf + pos);
    }
    assert_true(got >= 9 && memcmp(buf + got - 9, "survived\n", 9) == 0);
    assert_true(rc_alive(s));
}

/* Churn while a stream is relayed: the steady reader gets the stream intact and in order. */
static void test_churn_during_traffic(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int pub = rc_connect(s), fast = rc_connect(s);
    int baseline = rc_fd_count(s);
    size_t mark = rc_log_mark(s);
    int64_t deadline;

    size_t len = 0, cap = 3000 * 300;
    char *data = malloc(cap);
    for (uint32_t i = 0; i < 3000; i++)
        len += rc_make_line(data + len, 40 + i % 250, "t", i);
    char *got = malloc(len + 4096);
    size_t off = 0, in = 0;
    int churn[64];
    int nchurn = 0, made = 0;
    deadline = rc_now_ms() + RC_IO_MS * 2;
    while ((off < len || in < len) && rc_now_ms() < deadline) {
        if (off < len)
            off += rc_send_some(pub, data + off, len - off > 4096 ? 4096 : len - off);
        ssize_t n = rc_recv_now(fast, got + in, len + 4096 - in);
        if (n < 0)
            fail_msg("the steady reader lost its connection");
        in += (size_t)n;
        /* Keep up to 64 short-lived clients around, closing the oldest in alternate ways. */
        if (made < 600) {
            if (nchurn == 64) {
                if (made % 2)
                    rc_reset(churn[0]);
                else
                    rc_close(churn[0]);
                memmove(churn, churn + 1, sizeof(churn[0]) * 63);
                nchurn--;
            }
            churn[nchurn++] = rc_connect_raw(s, 0);
            made++;
        }
        struct pollfd p = {.fd = fast, .events = POLLIN};
        poll(&p, 1, off < len ? 0 : 50);
    }
    if (in != len || memcmp(got, data, len) != 0)
        fail_msg("the steady reader got %zu bytes for a %zu-byte stream, or different bytes", in,
                 len);
    for (int i = 0; i < nchurn; i++)
        rc_close(churn[i]);
    wait_all_gone(s, mark);
    expect_fds(s, baseline);
    free(got);
    free(data);
}

/* Memory does not grow with the number of connections that came and went. */
static void test_churn_rss_stable(void **state)
{
    if (rc_under_asan())
        skip(); /* ASan's quarantine makes RSS meaningless */
    struct rc_server *s = rc_start("-q", NULL);
    int baseline = rc_fd_count(s);
    long rss[4] = {0};
    int fds[100];
    for (int round = 0; round < 4; round++) {
        for (int batch = 0; batch < 10; batch++) {
            for (int i = 0; i < 100; i++)
                fds[i] = rc_connect_raw(s, 0);
            for (int i = 0; i < 100; i++) {
                rc_send_str(fds[i], (i % 2) ? "x\n" : "partial");
                if (i % 3)
                    rc_close(fds[i]);
                else
                    rc_reset(fds[i]);
            }
        }
        expect_fds(s, baseline);
        rss[round] = rc_rss_kb(s);
    }
    /* After the first round warmed the pools, three more rounds add less than 8 MiB. */
    if (rss[3] - rss[0] > 8 * 1024)
        fail_msg("RSS grew from %ld KiB to %ld KiB over 3000 connections", rss[0], rss[3]);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_churn_reset_mid_frame, rc_teardown),
        cmocka_unit_test_teardown(test_churn_reset_while_sending, rc_teardown),
        cmocka_unit_test_teardown(test_churn_connect_close, rc_teardown),
        cmocka_unit_test_teardown(test_churn_during_traffic, rc_teardown),
        cmocka_unit_test_teardown(test_churn_rss_stable, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
