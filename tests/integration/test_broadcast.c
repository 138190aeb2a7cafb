/* Broadcast semantics: no echo by default, --echo, who receives what, ordering, 500+ receivers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

/* A frame from one client reaches every other client, and never its sender. */
static void test_broadcast_no_echo(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);

    rc_send_str(a, "hello from a\n");
    rc_expect_str(b, "hello from a\n");
    rc_expect_str(c, "hello from a\n");

    /* b has seen a's frame, so the server processed it; the first thing a then gets is b's. */
    rc_send_str(b, "hello from b\n");
    rc_expect_str(a, "hello from b\n");
    rc_expect_str(c, "hello from b\n");

    rc_send_str(c, "hello from c\n");
    rc_expect_str(a, "hello from c\n");
    rc_expect_str(b, "hello from c\n");

    /* Negative check only: nothing else (no greeting, no echo) is pending anywhere. */
    assert_true(rc_quiet(a, 50));
    assert_true(rc_quiet(b, 1));
    assert_true(rc_quiet(c, 1));
}

/* With --echo the sender gets its own frames too, in the same order as everyone else. */
static void test_broadcast_echo(void **state)
{
    struct rc_server *s = rc_start("--echo", NULL);
    int a = rc_connect(s), b = rc_connect(s);

    rc_send_str(a, "one\ntwo\n");
    rc_expect_str(a, "one\ntwo\n");
    rc_expect_str(b, "one\ntwo\n");
    rc_send_str(b, "three\n");
    rc_expect_str(a, "three\n");
    rc_expect_str(b, "three\n");
}

/* A client gets only frames completed after it was registered, and no greeting. */
static void test_broadcast_late_joiner(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);

    rc_send_str(a, "before\n");
    rc_expect_str(b, "before\n");

    int c = rc_connect(s);
    rc_send_str(a, "after\n");
    rc_expect_str(b, "after\n");
    rc_expect_str(c, "after\n");

    /* A client that leaves does not disturb the others. */
    size_t mark = rc_log_mark(s);
    int pb = rc_close(b);
    rc_wait_client_log(s, mark, pb, "disconnected.");
    rc_send_str(c, "still here\n");
    rc_expect_str(a, "still here\n");
}

/* EOF from a client means it is gone: a half-closed client is logged out and gets nothing more. */
static void test_broadcast_half_close_is_gone(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);
    size_t mark = rc_log_mark(s);
    rc_send_str(a, "last from a\n");
    assert_int_equal(shutdown(a, SHUT_WR), 0);
    rc_wait_client_log(s, mark, rc_port_of(a), "disconnected.");
    rc_expect_str(b, "last from a\n");
    rc_send_str(b, "after a left\n");
    rc_expect_str(c, "last from a\nafter a left\n");
    /* a is closed by the server and gets nothing after its EOF. */
    assert_int_equal(rc_recv_until_eof(a, NULL, 0, RC_IO_MS), 0);
}

#define SENDERS 4
#define RECEIVERS 3
#define PER_SENDER 1500

struct seen {
    uint32_t next[SENDERS];
    size_t frames;
};

/* Parses a stream of "sK-NNNNNNNN ...\n" frames, checking each sender's numbers run in order. */
static void check_stream(const char *who, const char *buf, size_t len, struct seen *seen)
{
    memset(seen, 0, sizeof(*seen));
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl)
            fail_msg("%s: stream ends inside a frame at %zu", who, pos);
        int sender = -1;
        unsigned seq = 0;
        if (sscanf(buf + pos, "s%d-%8u ", &sender, &seq) != 2 || sender < 0 || sender >= SENDERS)
            fail_msg("%s: unparsable frame at offset %zu: %.20s", who, pos, buf + pos);
        if (seq != seen->next[sender])
            fail_msg("%s: sender %d frame %u arrived where %u was due", who, sender, seq,
                     seen->next[sender]);
        seen->next[sender]++;
        seen->frames++;
        pos = (size_t)(nl - buf) + 1;
    }
}

/* Removes sender k's frames from a stream (what sender k itself must have received). */
static size_t without_sender(const char *in, size_t len, int k, char *out)
{
    size_t pos = 0, o = 0;
    char tag[8];
    snprintf(tag, sizeof(tag), "s%d-", k);
    while (pos < len) {
        const char *nl = memchr(in + pos, '\n', len - pos);
        size_t flen = (size_t)(nl - (in + pos)) + 1;
        if (strncmp(in + pos, tag, strlen(tag)) != 0) {
            memcpy(out + o, in + pos, flen);
            o += flen;
        }
        pos += flen;
    }
    return o;
}

/*
 * Several senders at once: every receiver sees the same overall order, each sender's frames in
 * the order sent, and each sender sees everyone else's frames in that same order.
 */
static void test_broadcast_many_senders_order(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int fds[SENDERS + RECEIVERS];
    rc_connect_many(s, fds, SENDERS + RECEIVERS);

    char *out[SENDERS];
    size_t out_len[SENDERS], total = 0;
    for (int k = 0; k < SENDERS; k++) {
        out[k] = malloc(PER_SENDER * 300);
        out_len[k] = 0;
        for (uint32_t i = 0; i < PER_SENDER; i++) {
            size_t len = 16 + (i * 37 + (uint32_t)k * 11) % 240;
            char prefix[8];
            snprintf(prefix, sizeof(prefix), "s%d-", k);
            out_len[k] += rc_make_line(out[k] + out_len[k], len, prefix, i);
        }
        total += out_len[k];
    }

    struct rc_flow flows[SENDERS + RECEIVERS];
    memset(flows, 0, sizeof(flows));
    for (int i = 0; i < SENDERS + RECEIVERS; i++) {
        flows[i].fd = fds[i];
        size_t want = total;
        if (i < SENDERS) {
            flows[i].out = (const uint8_t *)out[i];
            flows[i].out_len = out_len[i];
            want = total - out_len[i];
        }
        flows[i].in = malloc(want);
        flows[i].in_len = want;
    }
    assert_true(rc_transfer(flows, SENDERS + RECEIVERS, RC_IO_MS * 2));

    struct seen seen;
    const char *ref = (const char *)flows[SENDERS].in;
    for (int r = SENDERS; r < SENDERS + RECEIVERS; r++) {
        char who[32];
        snprintf(who, sizeof(who), "receiver %d", r - SENDERS);
        check_stream(who, (const char *)flows[r].in, total, &seen);
        assert_int_equal(seen.frames, SENDERS * PER_SENDER);
        if (memcmp(flows[r].in, ref, total) != 0)
            fail_msg("receiver %d saw a different overall order than receiver 0", r - SENDERS);
    }
    char *filtered = malloc(total);
    for (int k = 0; k < SENDERS; k++) {
        size_t n = without_sender(ref, total, k, filtered);
        assert_int_equal(n, flows[k].in_len);
        if (memcmp(filtered, flows[k].in, n) != 0)
            fail_msg("sender %d saw the others' frames in a different order", k);
    }
    free(filtered);
    for (int i = 0; i < SENDERS + RECEIVERS; i++)
        free(flows[i].in);
    for (int k = 0; k < SENDERS; k++)
        free(out[k]);
}

#define MANY 520
#define MANY_FRAMES 200

/* 500+ receivers all get every frame, byte-exact. */
static void test_broadcast_500_receivers(void **state)
{
    struct rc_server *s = rc_start(NULL);
    static int fds[MANY + 1];
    rc_connect_many(s, fds, MANY + 1);
    int sender = fds[MANY];

    struct rc_flow *flows = calloc(MANY + 1, sizeof(*flows));
    for (int i = 0; i < MANY; i++)
        flows[i].fd = fds[i];
    char *data = malloc(MANY_FRAMES * 100);
    size_t len = 0;
    for (uint32_t i = 0; i < MANY_FRAMES; i++)
        len += rc_make_line(data + len, 100, "m-", i);
    for (int i = 0; i < MANY; i++) {
        flows[i].in = malloc(len);
        flows[i].in_len = len;
    }
    flows[MANY].fd = sender;
    flows[MANY].out = (const uint8_t *)data;
    flows[MANY].out_len = len;
    assert_true(rc_transfer(flows, MANY + 1, RC_IO_MS * 2));
    for (int i = 0; i < MANY; i++) {
        if (memcmp(flows[i].in, data, len) != 0)
            fail_msg("receiver %d got different bytes", i);
        free(flows[i].in);
    }
    /* The sender did not get its own frames: the next thing it gets is a receiver's. */
    rc_send_str(fds[0], "done\n");
    rc_expect_str(sender, "done\n");
    free(flows);
    free(data);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_broadcast_no_echo, rc_teardown),
        cmocka_unit_test_teardown(test_broadcast_echo, rc_teardown),
        cmocka_unit_test_teardown(test_broadcast_late_joiner, rc_teardown),
        cmocka_unit_test_teardown(test_broadcast_half_close_is_gone, rc_teardown),
        cmocka_unit_test_teardown(test_broadcast_many_senders_order, rc_teardown),
        cmocka_unit_test_teardown(test_broadcast_500_receivers, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
