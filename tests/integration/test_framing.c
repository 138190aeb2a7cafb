/* Framing: line and len32 frames are relayed byte-exact, whatever the TCP segmentation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* \r, NUL, non-UTF-8 bytes and empty lines are all part of (or are) frames. */
static void test_framing_line_bytes_exact(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    static const struct {
        const char *data;
        size_t len;
    } frames[] = {
#define F(lit) {lit, sizeof(lit) - 1}
        F("plain\n"),
        F("crlf\r\n"),
        F("\n"),
        F("\r\n"),
        F("nul\0inside\n"),
        F("\xff\xfe\x80\xc3\x28 not utf-8\n"),
        F("\t\x01\x7f\x1b[0m\n"),
        F("\0\n"),
#undef F
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        rc_send(a, frames[i].data, frames[i].len);
        rc_expect(b, frames[i].data, frames[i].len);
    }
    /* A long line (under the default 1 MiB max-frame) with every byte value but '\n'. */
    size_t big = 300 * 1024;
    char *line = malloc(big);
    for (size_t i = 0; i < big - 1; i++) {
        line[i] = (char)(i % 255);
        if (line[i] == '\n')
            line[i] = '\r';
    }
    line[big - 1] = '\n';
    rc_send(a, line, big);
    rc_expect(b, line, big);
    free(line);
}

/* A frame that arrives one byte at a time is relayed whole, and not before its last byte. */
static void test_framing_line_bytewise(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    const char *frame = "one byte at a time, with \r and \x01 inside\n";
    size_t len = strlen(frame);
    for (size_t i = 0; i < len; i++) {
        rc_send(a, frame + i, 1);
        if (i + 1 < len)
            assert_true(rc_quiet(b, 2)); /* nothing may come before the frame is complete */
    }
    rc_expect(b, frame, len);
}

/* Every split position of one frame, and of two frames, relays exactly. */
static void test_framing_line_every_split(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    const char *data = "first frame\r\n\nthird\0frame\n";
    size_t len = 26;
    for (size_t k = 1; k < len; k++) {
        rc_send(a, data, k);
        if (!memchr(data, '\n', k))
            assert_true(rc_quiet(b, 1)); /* no frame is complete yet */
        rc_send(a, data + k, len - k);
        rc_expect(b, data, len);
    }
}

/* Many frames in one write come out as the same frames. */
static void test_framing_line_coalesced(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);
    size_t cap = 3000 * 64, len = 0;
    char *buf = malloc(cap);
    for (uint32_t i = 0; i < 3000; i++)
        len += rc_make_line(buf + len, 12 + i % 50, "c", i);
    rc_send(a, buf, len);
    rc_expect(b, buf, len);
    /* Then a write that ends inside a frame, completed by the next write. */
    rc_send_str(a, "x\ny\nz");
    rc_expect_str(b, "x\ny\n");
    rc_send_str(a, "zz\n");
    rc_expect_str(b, "zzz\n");
    free(buf);
}

/* Frames of several clients are never interleaved, whatever their partial state. */
static void test_framing_partials_not_interleaved(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);
    rc_send_str(a, "par");
    rc_send_str(b, "full\n");
    rc_expect_str(c, "full\n");
    rc_expect_str(a, "full\n");
    rc_send_str(a, "tial\n");
    rc_expect_str(c, "partial\n");
    rc_expect_str(b, "partial\n");
}

/* Incomplete data left when a client disconnects (or resets) is dropped. */
static void test_framing_partial_dropped_on_close(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);
    size_t mark = rc_log_mark(s);
    rc_send_str(a, "complete\nincomplete");
    rc_expect_str(c, "complete\n");
    int pa = rc_close(a);
    rc_wait_client_log(s, mark, pa, "disconnected");

    int d = rc_connect(s);
    rc_send_str(d, "dangling");
    rc_send_str(b, "sync\n");
    rc_expect_str(d, "sync\n");
    mark = rc_log_mark(s);
    int pd = rc_reset(d);
    rc_wait_client_log(s, mark, pd, "disconnected");

    rc_send_str(b, "next\n");
    rc_expect_str(c, "sync\nnext\n");
}

static size_t len32(uint8_t *buf, const char *payload, uint32_t n)
{
    return rc_make_len32(buf, payload, n);
}

/* len32 frames are relayed with their header; N = 0 is a frame; payload bytes are opaque. */
static void test_framing_len32_basic(void **state)
{
    struct rc_server *s = rc_start("--framing", "len32", NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);
    uint8_t f[64];
    size_t n = len32(f, "hello", 5);
    rc_send(a, f, n);
    rc_expect(b, f, n);
    rc_expect(c, f, n);

    n = len32(f, "", 0);
    rc_send(b, f, n);
    rc_expect(a, f, n);
    rc_expect(c, f, n);

    n = len32(f, "line\nbreaks\0and\xff", 17);
    rc_send(c, f, n);
    rc_expect(a, f, n);
    rc_expect(b, f, n);

    /* 700 KiB payload, under the default 1 MiB max-frame. */
    uint32_t big = 700 * 1024;
    uint8_t *bf = malloc(4 + big);
    char *payload = malloc(big);
    for (uint32_t i = 0; i < big; i++)
        payload[i] = (char)(i * 31 + 7);
    n = rc_make_len32(bf, payload, big);
    rc_send(a, bf, n);
    rc_expect(b, bf, n);
    rc_expect(c, bf, n);
    free(bf);
    free(payload);
}

/* Every split of two len32 frames, including inside the header, relays exactly. */
static void test_framing_len32_every_split(void **state)
{
    struct rc_server *s = rc_start("--framing", "len32", NULL);
    int a = rc_connect(s), b = rc_connect(s);
    uint8_t data[64];
    size_t len = len32(data, "0123456789", 10);
    len += len32(data + len, "", 0);
    len += len32(data + len, "\n\n", 2);
    for (size_t k = 1; k < len; k++) {
        rc_send(a, data, k);
        if (k < 14)
            assert_true(rc_quiet(b, 1)); /* the first frame is not complete yet */
        rc_send(a, data + k, len - k);
        rc_expect(b, data, len);
    }
    /* And one byte at a time. */
    for (size_t i = 0; i < len; i++)
        rc_send(a, data + i, 1);
    rc_expect(b, data, len);
}

/* Many len32 frames of varied sizes (0 included) in one write. */
static void test_framing_len32_coalesced(void **state)
{
    struct rc_server *s = rc_start("--framing", "len32", NULL);
    int a = rc_connect(s), b = rc_connect(s);
    char payload[512];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)i;
    uint8_t *buf = malloc(2000 * 520);
    size_t len = 0;
    for (uint32_t i = 0; i < 2000; i++)
        len += rc_make_len32(buf + len, payload + i % 7, (i * 13) % 500);
    rc_send(a, buf, len);
    rc_expect(b, buf, len);

    /* Incomplete len32 data of a client that leaves is dropped. */
    size_t mark = rc_log_mark(s);
    uint8_t part[16];
    len32(part, "12345678", 8);
    rc_send(a, part, 7); /* header + 3 of 8 payload bytes */
    int pa = rc_close(a);
    rc_wait_client_log(s, mark, pa, "disconnected");
    int c = rc_connect(s);
    rc_send(c, part, 12);
    rc_expect(b, part, 12);
    free(buf);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_framing_line_bytes_exact, rc_teardown),
        cmocka_unit_test_teardown(test_framing_line_bytewise, rc_teardown),
        cmocka_unit_test_teardown(test_framing_line_every_split, rc_teardown),
        cmocka_unit_test_teardown(test_framing_line_coalesced, rc_teardown),
        cmocka_unit_test_teardown(test_framing_partials_not_interleaved, rc_teardown),
        cmocka_unit_test_teardown(test_framing_partial_dropped_on_close, rc_teardown),
        cmocka_unit_test_teardown(test_framing_len32_basic, rc_teardown),
        cmocka_unit_test_teardown(test_framing_len32_every_split, rc_teardown),
        cmocka_unit_test_teardown(test_framing_len32_coalesced, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
