/* Unit tests of flood's sequence accounting (bench/flood/seq.c: the lost / duplicated /
 * reordered rules of issue 3) and of its messages (bench/flood/msg.c: build / parse round trip in
 * every wire format, and detection of a changed byte). */
#include "msg.h"
#include "seq.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- seq ---- */

static void record_all(struct seqtrack *t, const uint64_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seq_record(t, s[i]), 0);
}

#define RECORD(t, ...)                                                                             \
    do {                                                                                           \
        const uint64_t seq_[] = {__VA_ARGS__};                                                     \
        record_all(t, seq_, sizeof(seq_) / sizeof(seq_[0]));                                       \
    } while (0)

static void expect_counts(const struct seqtrack *t, uint64_t lost, uint64_t dup, uint64_t reord)
{
    assert_int_equal(t->lost, lost);
    assert_int_equal(t->duplicated, dup);
    assert_int_equal(t->reordered, reord);
}

static void test_seq_in_order(void **state)
{
    (void)state;
    struct seqtrack t;
    seq_init(&t);
    for (uint64_t s = 0; s < 1000; s++)
        assert_int_equal(seq_record(&t, s), 0);
    expect_counts(&t, 0, 0, 0);
    assert_int_equal(t.next, 1000);
    assert_int_equal(t.received, 1000);
    assert_int_equal(seq_lost_final(&t, 1000), 0);
    /* The tail that never came is lost. */
    assert_int_equal(seq_lost_final(&t, 1005), 5);
    seq_free(&t);
}

static void test_seq_gap_is_lost(void **state)
{
    (void)state;
    struct seqtrack t;
    seq_init(&t);
    RECORD(&t, 0, 1, 5, 6); /* 2, 3, 4 missing */
    expect_counts(&t, 3, 0, 0);
    assert_int_equal(t.next, 7);
    assert_int_equal(seq_lost_final(&t, 7), 3);
    assert_int_equal(seq_lost_final(&t, 9), 5);
    seq_free(&t);
}

/* Two swapped messages: lost 0, reordered 1. */
static void test_seq_swap(void **state)
{
    (void)state;
    struct seqtrack t;
    seq_init(&t);
    RECORD(&t, 0, 1, 3, 2, 4);
    expect_counts(&t, 0, 0, 1);
    assert_int_equal(seq_lost_final(&t, 5), 0);
    seq_free(&t);
}

static void test_seq_duplicate(void **state)
{
    (void)state;
    struct seqtrack t;
    seq_init(&t);
    RECORD(&t, 0, 1, 1, 2, 0);
    expect_counts(&t, 0, 2, 0);
    assert_int_equal(t.received, 5);
    assert_int_equal(seq_lost_final(&t, 3), 0);
    /* A late message that already came late is a duplicate the second time. */
    RECORD(&t, 5, 4, 4, 3);
    expect_counts(&t, 0, 3, 2);
    seq_free(&t);
}

/* A late message from the middle of a gap splits it; the ends shrink it. */
static void test_seq_gap_split(void **state)
{
    (void)state;
    struct seqtrack t;
    seq_init(&t);
    RECORD(&t, 0, 10); /* 1..9 missing */
    expect_counts(&t, 9, 0, 0);
    assert_int_equal(t.ngaps, 1);
    RECORD(&t, 5); /* 1..4 and 6..9 */
    expect_counts(&t, 8, 0, 1);
    assert_int_equal(t.ngaps, 2);
    RECORD(&t, 1, 9, 4, 6); /* 2..3 and 7..8 */
    expect_counts(&t, 4, 0, 5);
    assert_int_equal(t.ngaps, 2);
    RECORD(&t, 2, 3); /* 7..8 */
    expect_counts(&t, 2, 0, 7);
    assert_int_equal(t.ngaps, 1);
    RECORD(&t, 5, 10, 0); /* all seen before */
    expect_counts(&t, 2, 3, 7);
    RECORD(&t, 8, 7);
    expect_counts(&t, 0, 3, 9);
    assert_int_equal(t.ngaps, 0);
    assert_int_equal(seq_lost_final(&t, 11), 0);
    seq_free(&t);
}

/* The whole stream reversed: every message but the first counted lost, then found. */
static void test_seq_reversed(void **state)
{
    (void)state;
    struct seqtrack t;
    seq_init(&t);
    for (uint64_t s = 100; s-- > 0;)
        assert_int_equal(seq_record(&t, s), 0);
    expect_counts(&t, 0, 0, 99);
    assert_int_equal(seq_lost_final(&t, 100), 0);
    seq_free(&t);
}

/* Past SEQ_MAX_GAPS open ranges the oldest are forgotten: a message from them that comes later
 * counts as a duplicate (seq.h says so), and `forgotten` tells. */
static void test_seq_gap_limit(void **state)
{
    (void)state;
    struct seqtrack t;
    seq_init(&t);
    uint64_t gaps = SEQ_MAX_GAPS + 100;
    for (uint64_t i = 0; i <= gaps; i++)
        assert_int_equal(seq_record(&t, 2 * i), 0); /* every odd number missing */
    assert_int_equal(t.lost, gaps);
    assert_true(t.forgotten > 0);
    assert_true(t.ngaps <= SEQ_MAX_GAPS);
    assert_int_equal(t.ngaps + t.forgotten, gaps);
    RECORD(&t, 1); /* from a forgotten range */
    assert_int_equal(t.duplicated, 1);
    RECORD(&t, 2 * gaps - 1); /* from the newest range, still known */
    assert_int_equal(t.reordered, 1);
    assert_int_equal(t.lost, gaps - 1);
    seq_free(&t);
}

/* ---- msg ---- */

static const enum proto protos[] = {PROTO_LINE, PROTO_LEN32, PROTO_REDIS, PROTO_NATS};

/* What a subscriber receives for one message (the publisher's bytes for line and len32; a RESP
 * "message" push for redis). Returns its length. */
static size_t subscriber_view(const struct msgfmt *f, const char *pub, char *out)
{
    if (f->proto == PROTO_NATS) {
        /* MSG <subject> <sid> <size>\r\n<payload>\r\n (flood subscribes with sid 1) */
        int n = sprintf(out, "MSG %s 1 %zu\r\n", f->channel, f->size);
        memcpy(out + n, pub + f->wire_pub - f->size - 2, f->size);
        memcpy(out + (size_t)n + f->size, "\r\n", 2);
        return (size_t)n + f->size + 2;
    }
    if (f->proto != PROTO_REDIS) {
        memcpy(out, pub, f->wire_pub);
        return f->wire_pub;
    }
    int n = sprintf(out, "%.*s%zu\r\n", (int)f->sub_prefix_len, f->sub_prefix, f->size);
    memcpy(out + n, pub + f->pub_prefix_len, f->size);
    memcpy(out + (size_t)n + f->size, "\r\n", 2);
    return (size_t)n + f->size + 2;
}

static void round_trip(enum proto p, size_t size, char type, unsigned pub, uint64_t seq,
                       uint64_t ts)
{
    struct msgfmt f;
    assert_int_equal(msgfmt_init(&f, p, size, "flood"), 0);
    char *wire = malloc(f.wire_pub);
    char *sub = malloc(f.wire_sub + 64);
    msg_encode(&f, wire, type, pub, seq, ts);
    size_t len = subscriber_view(&f, wire, sub);
    assert_int_equal(len, f.wire_sub);

    const char *payload = NULL;
    size_t plen = 0;
    /* Not yet complete: more bytes needed. */
    assert_int_equal(msg_next(&f, sub, len - 1, &payload, &plen), 0);
    assert_int_equal(msg_next(&f, sub, len, &payload, &plen), (ssize_t)len);
    assert_int_equal(plen, size);
    struct msg_info mi;
    assert_int_equal(msg_check(&f, payload, plen, &mi), 0);
    assert_int_equal(mi.type, type);
    assert_int_equal(mi.pub, pub);
    assert_int_equal(mi.seq, seq);
    assert_int_equal(mi.ts, ts);
    /* Printable, and in line mode a single '\n' at the end. */
    for (size_t i = 0; i + 1 < size; i++)
        assert_true(payload[i] >= 32 && payload[i] < 127);
    if (p == PROTO_LINE)
        assert_int_equal(payload[size - 1], '\n');
    free(wire);
    free(sub);
    msgfmt_free(&f);
}

static void test_msg_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
        size_t sizes[] = {msg_min_size(protos[i]), 64, 100, 1024, 65536};
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            round_trip(protos[i], sizes[k], 'M', 0, 0, 0);
            round_trip(protos[i], sizes[k], 'W', 1, 42, 123456789);
            round_trip(protos[i], sizes[k], 'M', MSG_MAX_PUBS, MSG_MAX_SEQ - 1, MSG_MAX_TS - 1);
        }
    }
}

/* Several messages back to back in one buffer are found one after the other. */
static void test_msg_stream(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
        struct msgfmt f;
        assert_int_equal(msgfmt_init(&f, protos[i], 64, "chan"), 0);
        char wire[256], *buf = malloc(10 * f.wire_sub);
        size_t len = 0;
        for (uint64_t s = 0; s < 10; s++) {
            msg_encode(&f, wire, 'M', 3, s, s * 1000);
            len += subscriber_view(&f, wire, buf + len);
        }
        size_t off = 0;
        for (uint64_t s = 0; s < 10; s++) {
            const char *payload;
            size_t plen;
            ssize_t n = msg_next(&f, buf + off, len - off, &payload, &plen);
            assert_int_equal(n, (ssize_t)f.wire_sub);
            struct msg_info mi;
            assert_int_equal(msg_check(&f, payload, plen, &mi), 0);
            assert_int_equal(mi.seq, s);
            off += (size_t)n;
        }
        assert_int_equal(off, len);
        free(buf);
        msgfmt_free(&f);
    }
}

static bool is_hex(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Every changed byte is detected: in the filler, the separators, the type, the final '\n', and
 * in the header, whose check field (a weighted sum mod 251) catches any one-byte change. */
static void test_msg_corruption(void **state)
{
    (void)state;
    const size_t sizes[] = {34, 64, 200};
    unsigned long hex_changes = 0, hex_unseen = 0, tried = 0;
    for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
        for (uint64_t q = 0; q < 40; q++) {
            for (size_t i = 0; i < 2; i++) {
                struct msgfmt f;
                assert_int_equal(msgfmt_init(&f, protos[i], sizes[z], "flood"), 0);
                char *wire = malloc(f.wire_pub);
                uint64_t seq = q * 0x9e3779b1ULL % MSG_MAX_SEQ;
                msg_encode(&f, wire, q % 2 ? 'M' : 'W', (unsigned)q, seq, 0x1234567 + q * 977);
                char *payload = wire + f.pub_prefix_len;
                struct msg_info mi;
                assert_int_equal(msg_check(&f, payload, f.size, &mi), 0);
                for (size_t pos = 0; pos < f.size; pos++) {
                    char orig = payload[pos];
                    bool hex_field = pos < MSG_HDR_LEN && is_hex((unsigned char)orig);
                    for (int v = 0; v < 256; v++) {
                        if ((char)v == orig)
                            continue;
                        payload[pos] = (char)v;
                        tried++;
                        bool seen = msg_check(&f, payload, f.size, &mi) != 0;
                        if (hex_field && is_hex(v)) {
                            hex_changes++;
                            hex_unseen += !seen;
                        }
                        if (!seen) {
                            print_error("%s size %zu: byte %zu changed from 0x%02x to 0x%02x is "
                                        "not detected\n",
                                        proto_name(protos[i]), sizes[z], pos, (unsigned char)orig,
                                        v);
                            fail();
                        }
                    }
                    payload[pos] = orig;
                }
                /* A short payload is corrupt too. */
                assert_int_equal(msg_check(&f, payload, f.size - 1, &mi), -1);
                free(wire);
                msgfmt_free(&f);
            }
        }
    }
    assert_true(tried > 1000000);
    assert_true(hex_changes > 10000);
    assert_int_equal(hex_unseen, 0);
}

static void test_msg_framing_errors(void **state)
{
    (void)state;
    struct msgfmt f;
    const char *payload;
    size_t plen;
    /* line: a line without its '\n' needs more bytes; one that never ends is hopeless. */
    assert_int_equal(msgfmt_init(&f, PROTO_LINE, 64, "flood"), 0);
    size_t big = 16 * 64 + 4096 + 10;
    char *junk = malloc(big);
    memset(junk, 'x', big);
    assert_int_equal(msg_next(&f, junk, 100, &payload, &plen), 0);
    assert_int_equal(msg_next(&f, junk, big, &payload, &plen), -1);
    msgfmt_free(&f);
    /* len32: an absurd length cannot be resynchronised. */
    assert_int_equal(msgfmt_init(&f, PROTO_LEN32, 64, "flood"), 0);
    const char hdr[4] = {0x7f, 0, 0, 0};
    assert_int_equal(msg_next(&f, hdr, 4, &payload, &plen), -1);
    assert_int_equal(msg_next(&f, hdr, 3, &payload, &plen), 0);
    msgfmt_free(&f);
    /* redis: anything but a "message" push on our channel. */
    assert_int_equal(msgfmt_init(&f, PROTO_REDIS, 64, "flood"), 0);
    const char *other = "*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$64\r\n";
    assert_int_equal(msg_next(&f, other, strlen(other), &payload, &plen), -1);
    free(junk);
    msgfmt_free(&f);
}

/* nats: the server's control lines are told apart from messages. */
static void test_msg_nats_control(void **state)
{
    (void)state;
    struct msgfmt f;
    assert_int_equal(msgfmt_init(&f, PROTO_NATS, 64, "flood"), 0);
    const char *payload = (const char *)1;
    size_t plen = 99;
    const char *ping = "PING\r\n";
    assert_int_equal(msg_next(&f, ping, strlen(ping), &payload, &plen), (ssize_t)strlen(ping));
    assert_null(payload);
    assert_int_equal(plen, MSG_CTL_PING);
    const char *err = "-ERR 'Slow Consumer'\r\n";
    assert_int_equal(msg_next(&f, err, strlen(err), &payload, &plen), (ssize_t)strlen(err));
    assert_null(payload);
    assert_int_equal(plen, MSG_CTL_ERR);
    assert_int_equal(msg_next(&f, ping, 3, &payload, &plen), 0); /* incomplete */
    msgfmt_free(&f);
}

static void test_msg_sizes(void **state)
{
    (void)state;
    struct msgfmt f;
    assert_int_equal(msg_min_size(PROTO_LINE), MSG_HDR_LEN + 1);
    assert_int_equal(msg_min_size(PROTO_LEN32), MSG_HDR_LEN);
    assert_int_equal(msgfmt_init(&f, PROTO_LINE, MSG_HDR_LEN, "flood"), -1);
    msgfmt_free(&f);
    assert_int_equal(msgfmt_init(&f, PROTO_LEN32, MSG_HDR_LEN - 1, "flood"), -1);
    msgfmt_free(&f);
    assert_int_equal(msgfmt_init(&f, PROTO_LINE, MSG_MAX_SIZE + 1, "flood"), -1);
    msgfmt_free(&f);
    char longname[MSG_MAX_CHANNEL + 2];
    memset(longname, 'c', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_int_equal(msgfmt_init(&f, PROTO_REDIS, 64, longname), -1);
    msgfmt_free(&f);
    /* Wire sizes. */
    assert_int_equal(msgfmt_init(&f, PROTO_LINE, 64, "flood"), 0);
    assert_int_equal(f.wire_pub, 64);
    assert_int_equal(f.wire_sub, 64);
    msgfmt_free(&f);
    assert_int_equal(msgfmt_init(&f, PROTO_LEN32, 64, "flood"), 0);
    assert_int_equal(f.wire_pub, 68);
    assert_int_equal(f.wire_sub, 68);
    msgfmt_free(&f);
    assert_int_equal(msgfmt_init(&f, PROTO_REDIS, 64, "flood"), 0);
    /* *3 $7 PUBLISH $5 flood $64 <64> \r\n */
    assert_int_equal(f.wire_pub, strlen("*3\r\n$7\r\nPUBLISH\r\n$5\r\nflood\r\n$64\r\n") + 66);
    assert_int_equal(f.wire_sub, strlen("*3\r\n$7\r\nmessage\r\n$5\r\nflood\r\n$64\r\n") + 66);
    msgfmt_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_in_order),       cmocka_unit_test(test_seq_gap_is_lost),
        cmocka_unit_test(test_seq_swap),           cmocka_unit_test(test_seq_duplicate),
        cmocka_unit_test(test_seq_gap_split),      cmocka_unit_test(test_seq_reversed),
        cmocka_unit_test(test_seq_gap_limit),      cmocka_unit_test(test_msg_round_trip),
        cmocka_unit_test(test_msg_stream),         cmocka_unit_test(test_msg_corruption),
        cmocka_unit_test(test_msg_framing_errors), cmocka_unit_test(test_msg_nats_control),
        cmocka_unit_test(test_msg_sizes),
    };
    return cmocka_run_group_tests_name("flood_seqmsg", tests, NULL, NULL);
}
