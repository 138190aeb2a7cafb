/* --max-frame: a longer frame is never relayed in any part and costs its sender the connection. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char too_long[] = "error: frame too long\n";

/* Reads until the server closes fd and checks that exactly want arrived before the close. */
static void expect_then_closed(int fd, const char *want, size_t len)
{
    char buf[4096];
    size_t n = rc_recv_until_eof(fd, buf, sizeof(buf), RC_IO_MS);
    if (n == (size_t)-1)
        fail_msg("the server did not close the offending client within %d ms", RC_IO_MS);
    if (n != len || memcmp(buf, want, len) != 0) {
        if (n > sizeof(buf))
            n = sizeof(buf);
        fail_msg("offending client got %zu bytes before the close: \"%.*s\", want \"%.*s\"", n,
                 (int)n, buf, (int)len, want);
    }
}

static char *line_of(size_t len, char fill)
{
    char *p = malloc(len);
    memset(p, fill, len);
    p[len - 1] = '\n';
    return p;
}

/* A line of exactly --max-frame bytes (its '\n' included) is relayed; the sender stays. */
static void test_maxframe_line_edge(void **state)
{
    struct rc_server *s = rc_start("--max-frame", "1K", NULL);
    int a = rc_connect(s), b = rc_connect(s);
    char *line = line_of(1024, 'e');
    rc_send(a, line, 1024);
    rc_expect(b, line, 1024);
    rc_send_str(b, "still connected\n");
    rc_expect_str(a, "still connected\n");
    free(line);
}

/*
 * A line one byte too long: the sender gets what was queued to it, then the error line, then the
 * close; its earlier frames were delivered; nothing of the long line reaches anyone.
 */
static void test_maxframe_line_too_long(void **state)
{
    struct rc_server *s = rc_start("--max-frame", "1K", NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);

    rc_send_str(a, "ok1\n");
    rc_expect_str(b, "ok1\n");
    rc_expect_str(c, "ok1\n");
    rc_send_str(b, "fromB\n");
    rc_expect_str(c, "fromB\n"); /* so it has been queued to a as well */

    size_t mark = rc_log_mark(s);
    int pa = rc_port_of(a);
    char *line = line_of(1025, 'L');
    rc_send_lenient(a, line, 1025, RC_IO_MS);
    char want[64];
    snprintf(want, sizeof(want), "fromB\n%s", too_long);
    expect_then_closed(a, want, strlen(want));
    rc_wait_client_log(s, mark, pa, "disconnected (frame too long).");

    rc_send_str(b, "after\n");
    rc_expect_str(c, "after\n");
    rc_send_str(c, "to b\n");
    rc_expect_str(b, "to b\n");
    free(line);
}

/* A line that is already too long before its '\n' arrives is refused without waiting for it. */
static void test_maxframe_line_unterminated(void **state)
{
    struct rc_server *s = rc_start("--max-frame", "1K", NULL);
    int a = rc_connect(s), b = rc_connect(s);
    size_t mark = rc_log_mark(s);
    int pa = rc_port_of(a);
    char *data = malloc(1025);
    memset(data, 'u', 1025); /* max-frame + 1 bytes and no '\n' */
    rc_send_lenient(a, data, 1025, RC_IO_MS);
    expect_then_closed(a, too_long, strlen(too_long));
    rc_wait_client_log(s, mark, pa, "disconnected (frame too long).");
    int c = rc_connect(s);
    rc_send_str(c, "after\n");
    rc_expect_str(b, "after\n");
    free(data);
}

/* Good frames before a long one in the same write are relayed; nothing after it is. */
static void test_maxframe_line_in_coalesced_write(void **state)
{
    struct rc_server *s = rc_start("--max-frame", "2K", NULL);
    int a = rc_connect(s), b = rc_connect(s);
    size_t mark = rc_log_mark(s);
    int pa = rc_port_of(a);
    size_t len = 0;
    char *buf = malloc(8192);
    len += (size_t)sprintf(buf, "good1\ngood2\n");
    memset(buf + len, 'x', 3000);
    len += 3000;
    buf[len++] = '\n';
    len += (size_t)sprintf(buf + len, "good3\n");
    rc_send_lenient(a, buf, len, RC_IO_MS);
    expect_then_closed(a, too_long, strlen(too_long));
    rc_wait_client_log(s, mark, pa, "disconnected (frame too long).");
    int c = rc_connect(s);
    rc_send_str(c, "after\n");
    rc_expect_str(b, "good1\ngood2\nafter\n");
    free(buf);
}

/* The default --max-frame is 1 MiB: a 1 MiB line passes, one byte more does not. */
static void test_maxframe_default_1mib(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    size_t mib = 1024 * 1024;
    char *line = line_of(mib, 'm');
    struct rc_flow f[2] = {
        {.fd = a, .out = (const uint8_t *)line, .out_len = mib},
        {.fd = b, .in = malloc(mib), .in_len = mib},
    };
    assert_true(rc_transfer(f, 2, RC_IO_MS));
    assert_memory_equal(f[1].in, line, mib);
    free(f[1].in);
    free(line);

    size_t mark = rc_log_mark(s);
    int pa = rc_port_of(a);
    line = line_of(mib + 1, 'M');
    rc_send_lenient(a, line, mib + 1, RC_IO_MS);
    expect_then_closed(a, too_long, strlen(too_long));
    rc_wait_client_log(s, mark, pa, "disconnected (frame too long).");
    int c = rc_connect(s);
    rc_send_str(c, "after\n");
    rc_expect_str(b, "after\n");
    free(line);
}

/* len32: N == max-frame passes; N > max-frame disconnects at the header, with no error line. */
static void test_maxframe_len32(void **state)
{
    struct rc_server *s = rc_start("--framing", "len32", "--max-frame", "1K", NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);
    uint8_t *frame = malloc(4 + 1025);
    char *payload = malloc(1025);
    memset(payload, 'p', 1025);

    size_t n = rc_make_len32(frame, payload, 1024);
    rc_send(a, frame, n);
    rc_expect(b, frame, n);
    rc_expect(c, frame, n);

    /* Only the header: the server must decide on it alone. */
    size_t mark = rc_log_mark(s);
    int pa = rc_port_of(a);
    rc_make_len32(frame, payload, 1025);
    rc_send_lenient(a, frame, 4, RC_IO_MS);
    rc_expect_closed(a);
    rc_wait_client_log(s, mark, pa, "disconnected (frame too long).");

    /* A header of 0xffffffff, with some payload after it. */
    int d = rc_connect(s);
    mark = rc_log_mark(s);
    int pd = rc_port_of(d);
    memset(frame, 0xff, 4);
    rc_send_lenient(d, frame, 4 + 100, RC_IO_MS);
    rc_expect_closed(d);
    rc_wait_client_log(s, mark, pd, "disconnected (frame too long).");

    n = rc_make_len32(frame, "after", 5);
    rc_send(c, frame, n);
    rc_expect(b, frame, n);
    free(frame);
    free(payload);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_maxframe_line_edge, rc_teardown),
        cmocka_unit_test_teardown(test_maxframe_line_too_long, rc_teardown),
        cmocka_unit_test_teardown(test_maxframe_line_unterminated, rc_teardown),
        cmocka_unit_test_teardown(test_maxframe_line_in_coalesced_write, rc_teardown),
        cmocka_unit_test_teardown(test_maxframe_default_1mib, rc_teardown),
        cmocka_unit_test_teardown(test_maxframe_len32, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
