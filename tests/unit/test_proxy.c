/*
 * The PROXY protocol header parser (proxy.c): headers exactly as HAProxy 2.6 sends them (v1 and
 * v2, with TLVs, its LOCAL health check), every prefix of a valid header needing more, the
 * client's bytes after a header left alone, and what is refused, at the earliest byte that tells.
 * Every input sits right before a PROT_NONE page, so a read past it faults.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ringcast/proxy.h"

#define ARENA_BYTES 4096u
#include "guard_page.h"

#define V2_SIG "\r\n\r\n\0\r\nQUIT\n"

struct bytes {
    const char *p;
    size_t len;
};
#define B(lit) ((struct bytes){(lit), sizeof(lit) - 1})

static enum proxy_result parse(struct bytes b, size_t len, struct proxy_header *h)
{
    assert_true(len <= b.len);
    return proxy_parse(guarded(b.p, len), len, h);
}

static const char *reason(struct bytes b, size_t len)
{
    assert_true(len <= b.len);
    return proxy_reason(guarded(b.p, len), len);
}

/* The source address of @h as the logs show it. */
static const char *src_text(const struct proxy_header *h)
{
    static char buf[NETADDR_STRLEN];
    return netaddr_format(&h->src, buf, sizeof(buf));
}

/*
 * @b is a whole header of @want_len bytes, maybe followed by a client's bytes: every prefix
 * shorter than the header needs more, and the header with any part of what follows is OK with
 * the same length. Returns the parse of all of @b.
 */
static struct proxy_header whole(struct bytes b, size_t want_len)
{
    struct proxy_header h;
    for (size_t k = 0; k < want_len; k++) {
        if (parse(b, k, &h) != PROXY_NEED_MORE)
            fail_msg("prefix of %zu of %zu bytes: not NEED_MORE", k, want_len);
        assert_null(reason(b, k));
    }
    struct proxy_header first;
    for (size_t k = want_len; k <= b.len; k++) {
        memset(&h, 0xa5, sizeof(h));
        if (parse(b, k, &h) != PROXY_OK)
            fail_msg("%zu bytes (header %zu): not OK (%s)", k, want_len, reason(b, k));
        assert_int_equal(h.len, want_len);
        assert_null(reason(b, k));
        if (k == want_len)
            first = h;
        else
            assert_memory_equal(&h, &first, sizeof(h));
    }
    return h;
}

/* ------------------------------------------------------------------ version 1 */

/* HAProxy's send-proxy, IPv4 client 127.0.0.1:33526 to a frontend on 39171, then the client's
 * "hello\n". */
static void test_proxy_v1_tcp4_from_haproxy(void **state)
{
    (void)state;
    struct bytes b = B("PROXY TCP4 127.0.0.1 127.0.0.1 33526 39171\r\nhello\n");
    struct proxy_header h = whole(b, b.len - 6);
    assert_int_equal(h.version, 1);
    assert_false(h.local);
    assert_int_equal(h.src.sa.sa_family, AF_INET);
    assert_string_equal(src_text(&h), "127.0.0.1:33526");

    /* The spec's own example; and the longest IPv4 line (56 bytes). */
    h = whole(B("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), 47);
    assert_string_equal(src_text(&h), "192.168.0.1:56324");
    h = whole(B("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"), 56);
    assert_string_equal(src_text(&h), "255.255.255.255:65535");
    h = whole(B("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n"), 33);
    assert_string_equal(src_text(&h), "0.0.0.0:0");
}

static void test_proxy_v1_tcp6(void **state)
{
    (void)state;
    /* HAProxy's send-proxy, IPv6 client [::1]:33992. */
    struct proxy_header h = whole(B("PROXY TCP6 ::1 ::1 33992 38423\r\nhello\n"), 32);
    assert_int_equal(h.version, 1);
    assert_false(h.local);
    assert_int_equal(h.src.sa.sa_family, AF_INET6);
    assert_string_equal(src_text(&h), "[::1]:33992");

    h = whole(B("PROXY TCP6 2001:DB8::7 2001:db8::1 4242 443\r\n"), 45);
    assert_string_equal(src_text(&h), "[2001:db8::7]:4242");
    /* The spec's longest TCP6 line (104 bytes), full groups in upper case. */
    h = whole(B("PROXY TCP6 FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF "
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
              104);
    assert_string_equal(src_text(&h), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    /* An IPv4-mapped address is shown as the IPv4 address it is (netaddr_format). */
    h = whole(B("PROXY TCP6 ::ffff:203.0.113.7 ::1 4242 1\r\n"), 42);
    assert_int_equal(h.src.sa.sa_family, AF_INET6);
    assert_string_equal(src_text(&h), "203.0.113.7:4242");
}

/* UNKNOWN: the socket's own address; the rest of the line, if any, is ignored. */
static void test_proxy_v1_unknown(void **state)
{
    (void)state;
    struct proxy_header h = whole(B("PROXY UNKNOWN\r\nPUB x\n"), 15);
    assert_int_equal(h.version, 1);
    assert_true(h.local);
    assert_int_equal(h.src.sa.sa_family, AF_UNSPEC);
    h = whole(B("PROXY UNKNOWN ::1 ::1 1 2\r\n"), 27);
    assert_true(h.local);
    h = whole(B("PROXY UNKNOWN whatever \x01\xff anything\r\n"), 36);
    assert_true(h.local);
    /* The spec's worst case: exactly 107 bytes. */
    struct bytes worst = B("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\nX");
    assert_int_equal(worst.len, PROXY_V1_MAX + 1);
    h = whole(worst, PROXY_V1_MAX);
    assert_true(h.local);
}

/* ------------------------------------------------------------------ version 2 */

/* HAProxy's send-proxy-v2: 127.0.0.1:59702 to 127.0.0.1:38599, then "hello\n". */
static void test_proxy_v2_ipv4_from_haproxy(void **state)
{
    (void)state;
    struct bytes b = B(V2_SIG "\x21\x11\x00\x0c"
                              "\x7f\x00\x00\x01\x7f\x00\x00\x01\xe9\x36\x96\xc7"
                              "hello\n");
    struct proxy_header h = whole(b, 28);
    assert_int_equal(h.version, 2);
    assert_false(h.local);
    assert_int_equal(h.src.sa.sa_family, AF_INET);
    assert_string_equal(src_text(&h), "127.0.0.1:59702");

    h = whole(B(V2_SIG "\x21\x11\x00\x0c"
                       "\xcb\x00\x71\x07\x7f\x00\x00\x01\x10\x92\x00\x01"),
              28);
    assert_string_equal(src_text(&h), "203.0.113.7:4242");
}

static void test_proxy_v2_ipv6_from_haproxy(void **state)
{
    (void)state;
    /* [::1]:39546 to [::1]:48593. */
    struct bytes b = B(V2_SIG "\x21\x21\x00\x24"
                              "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                              "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
                              "\x9a\x7a\xbd\xd1"
                              "hello\n");
    struct proxy_header h = whole(b, 52);
    assert_int_equal(h.version, 2);
    assert_false(h.local);
    assert_int_equal(h.src.sa.sa_family, AF_INET6);
    assert_string_equal(src_text(&h), "[::1]:39546");
}

/* HAProxy's proxy-v2-options crc32c,unique-id: the length covers the TLVs, which are skipped. */
static void test_proxy_v2_tlvs_from_haproxy(void **state)
{
    (void)state;
    struct bytes b = B(V2_SIG "\x21\x11\x00\x1c"
                              "\x7f\x00\x00\x01\x7f\x00\x00\x01\x8c\x28\x85\x67"
                              "\x03\x00\x04\xb5\x35\xdf\x19"
                              "\x05\x00\x06"
                              "abc123"
                              "hello\n");
    struct proxy_header h = whole(b, 44);
    assert_false(h.local);
    assert_string_equal(src_text(&h), "127.0.0.1:35880");

    /* TLVs are not read: one that claims more than the block holds is not our business. */
    h = whole(B(V2_SIG "\x21\x11\x00\x10"
                       "\x0a\x00\x00\x01\x0a\x00\x00\x02\x00\x50\x01\xbb"
                       "\x04\xff\xff\x00"),
              32);
    assert_string_equal(src_text(&h), "10.0.0.1:80");
}

/* LOCAL (HAProxy's health check with send-proxy-v2): the socket's own address, whatever the family
 * byte and the block say. */
static void test_proxy_v2_local(void **state)
{
    (void)state;
    struct proxy_header h = whole(B(V2_SIG "\x20\x00\x00\x00"
                                           "PUB x\n"),
                                  16);
    assert_int_equal(h.version, 2);
    assert_true(h.local);
    assert_int_equal(h.src.sa.sa_family, AF_UNSPEC);
    /* "must not assume zero is presented for LOCAL connections": the block is skipped. */
    h = whole(B(V2_SIG "\x20\x11\x00\x0c"
                       "\xcb\x00\x71\x07\x7f\x00\x00\x01\x10\x92\x00\x01"),
              28);
    assert_true(h.local);
    h = whole(B(V2_SIG "\x20\xff\x00\x02"
                       "ab"),
              18);
    assert_true(h.local);
}

/* PROXY with a family the relay does not take an address from: accepted, the socket's address. */
static void test_proxy_v2_unsupported_families_keep_the_socket(void **state)
{
    (void)state;
    static const uint8_t fams[] = {0x00, 0x12, 0x22, 0x31, 0x32};
    static const size_t blocks[] = {0, 12, 36, 216, 216};
    uint8_t buf[16 + 216 + 4];
    for (size_t i = 0; i < sizeof(fams); i++) {
        memcpy(buf, V2_SIG, 12);
        buf[12] = 0x21;
        buf[13] = fams[i];
        buf[14] = (uint8_t)(blocks[i] >> 8);
        buf[15] = (uint8_t)blocks[i];
        memset(buf + 16, 0x42, blocks[i] + 4);
        struct proxy_header h =
            whole((struct bytes){(const char *)buf, 16 + blocks[i] + 4}, 16 + blocks[i]);
        assert_true(h.local);
        assert_int_equal(h.version, 2);
    }
}

/* The length field decides, up to PROXY_HEADER_MAX bytes in all. */
static void test_proxy_v2_longest(void **state)
{
    (void)state;
    static uint8_t buf[PROXY_HEADER_MAX + 1];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, V2_SIG "\x21\x11", 14);
    size_t block = PROXY_HEADER_MAX - 16;
    buf[14] = (uint8_t)(block >> 8);
    buf[15] = (uint8_t)block;
    buf[16] = 198; /* 198.51.100.9:7 */
    buf[17] = 51;
    buf[18] = 100;
    buf[19] = 9;
    buf[25] = 7;
    struct proxy_header h = whole((struct bytes){(const char *)buf, sizeof(buf)}, PROXY_HEADER_MAX);
    assert_string_equal(src_text(&h), "198.51.100.9:7");

    /* One more is too long, known from the length field alone. */
    block++;
    buf[14] = (uint8_t)(block >> 8);
    buf[15] = (uint8_t)block;
    struct bytes b = {(const char *)buf, sizeof(buf)};
    assert_int_equal(parse(b, 15, &h), PROXY_NEED_MORE);
    assert_int_equal(parse(b, 16, &h), PROXY_INVALID);
    assert_string_equal(reason(b, 16), "too long");
    buf[14] = buf[15] = 0xff;
    assert_int_equal(parse(b, 16, &h), PROXY_INVALID);
    assert_string_equal(reason(b, 16), "too long");
}

/* ------------------------------------------------------------------ refusals */

struct refusal {
    const char *what;
    struct bytes b;
    size_t at; /* the shortest prefix that is already INVALID */
    const char *reason;
};

static void check_refusals(const struct refusal *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct proxy_header h;
        memset(&h, 0x5a, sizeof(h));
        struct proxy_header before = h;
        for (size_t k = 0; k < r[i].at; k++)
            if (parse(r[i].b, k, &h) != PROXY_NEED_MORE)
                fail_msg("%s: %zu bytes not NEED_MORE (%s); refused at %zu expected", r[i].what, k,
                         reason(r[i].b, k), r[i].at);
        for (size_t k = r[i].at; k <= r[i].b.len; k++) {
            if (parse(r[i].b, k, &h) != PROXY_INVALID)
                fail_msg("%s: %zu bytes not INVALID", r[i].what, k);
            const char *why = reason(r[i].b, k);
            if (!why || strcmp(why, r[i].reason))
                fail_msg("%s: reason \"%s\", want \"%s\"", r[i].what, why ? why : "(null)",
                         r[i].reason);
        }
        assert_memory_equal(&h, &before, sizeof(h)); /* *out is written only on OK */
    }
}

/* Not a PROXY header at all: refused at the first byte that cannot start one. */
static void test_proxy_bad_signature_early(void **state)
{
    (void)state;
    static const struct refusal r[] = {
        {"a line frame", B("PUB hello\n"), 2, "bad signature"},
        {"an HTTP request", B("GET / HTTP/1.1\r\n"), 1, "bad signature"},
        {"a TLS ClientHello", B("\x16\x03\x01\x02\x00\x01"), 1, "bad signature"},
        {"a len32 frame", B("\x00\x00\x00\x05hello"), 1, "bad signature"},
        {"lower case", B("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"), 1, "bad signature"},
        {"PROXY without its space", B("PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n"), 6, "bad signature"},
        {"two spaces after PROXY", B("PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n"), 7, "v1: bad protocol"},
        {"a v2 signature cut by a LF", B("\r\n\r\n\0\n"), 6, "bad signature"},
        {"a v2 signature, last byte wrong", B("\r\n\r\n\0\r\nQUIT\r\x21\x11\x00\x00"), 12,
         "bad signature"},
        {"CRLF CRLF then text", B("\r\n\r\nGET"), 5, "bad signature"},
    };
    check_refusals(r, sizeof(r) / sizeof(r[0]));
}

static void test_proxy_v1_refusals(void **state)
{
    (void)state;
    static const struct refusal r[] = {
        {"TCP5", B("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"), 10, "v1: bad protocol"},
        {"UDP4", B("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"), 8, "v1: bad protocol"},
        {"tcp4", B("PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n"), 7, "v1: bad protocol"},
        {"UNKNOWNX", B("PROXY UNKNOWNX\r\n"), 14, "v1: bad protocol"},
        {"TCP4 without a space", B("PROXY TCP4\r\n"), 11, "v1: bad protocol"},
        /* addresses */
        {"double space", B("PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n"), 12, "v1: bad address"},
        {"leading zero", B("PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n"), 19, "v1: bad address"},
        {"octet 256", B("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n"), 20, "v1: bad address"},
        {"three octets", B("PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n"), 17, "v1: bad address"},
        {"five octets", B("PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n"), 19, "v1: bad address"},
        {"empty octet", B("PROXY TCP4 1..3.4 1.2.3.4 1 2\r\n"), 14, "v1: bad address"},
        {"trailing dot", B("PROXY TCP4 1.2.3. 1.2.3.4 1 2\r\n"), 18, "v1: bad address"},
        {"IPv6 in TCP4", B("PROXY TCP4 ::1 ::1 1 2\r\n"), 12, "v1: bad address"},
        {"IPv4 in TCP6", B("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), 19, "v1: bad address"},
        {"a name", B("PROXY TCP4 localhost 1.2.3.4 1 2\r\n"), 12, "v1: bad address"},
        {"not hex", B("PROXY TCP6 ::g ::1 1 2\r\n"), 14, "v1: bad address"},
        {"two ::", B("PROXY TCP6 1::2::3 ::1 1 2\r\n"), 19, "v1: bad address"},
        {"zone id", B("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), 19, "v1: bad address"},
        {"bracketed", B("PROXY TCP6 [::1] ::1 1 2\r\n"), 12, "v1: bad address"},
        {"bad destination", B("PROXY TCP4 1.2.3.4 1.2.3.999 1 2\r\n"), 28, "v1: bad address"},
        {"destination of another family", B("PROXY TCP4 1.2.3.4 ::1 1 2\r\n"), 20,
         "v1: bad address"},
        /* ports */
        {"port 65536", B("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"), 32, "v1: bad port"},
        {"port 100000", B("PROXY TCP4 1.2.3.4 1.2.3.4 10000 100000\r\n"), 39, "v1: bad port"},
        {"leading zero port", B("PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n"), 29, "v1: bad port"},
        {"port 00", B("PROXY TCP4 1.2.3.4 1.2.3.4 1 00\r\n"), 31, "v1: bad port"},
        {"negative port", B("PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n"), 28, "v1: bad port"},
        {"hex port", B("PROXY TCP4 1.2.3.4 1.2.3.4 0x50 2\r\n"), 29, "v1: bad port"},
        {"empty port", B("PROXY TCP4 1.2.3.4 1.2.3.4  2\r\n"), 28, "v1: bad port"},
        {"no destination port", B("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), 29, "v1: bad port"},
        {"a field too many", B("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"), 31, "v1: bad port"},
        {"space before CRLF", B("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n"), 31, "v1: bad port"},
        {"LF alone", B("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\nPUB\n"), 31, "v1: bad port"},
        /* line ends */
        {"CR alone", B("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rPUB\n"), 32, "v1: bad line end"},
        {"CR CR LF", B("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\r\n"), 32, "v1: bad line end"},
        {"UNKNOWN, LF alone", B("PROXY UNKNOWN\n"), 14, "v1: bad line end"},
        {"UNKNOWN, CR alone", B("PROXY UNKNOWN 1 2\rX\r\n"), 19, "v1: bad line end"},
        {"UNKNOWN, LF inside", B("PROXY UNKNOWN 1\n2\r\n"), 16, "v1: bad line end"},
    };
    check_refusals(r, sizeof(r) / sizeof(r[0]));
}

/* No CRLF within 107 bytes: refused at the 107th, whatever comes after. */
static void test_proxy_v1_too_long(void **state)
{
    (void)state;
    char line[PROXY_V1_MAX + 16];
    memset(line, 'f', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + PROXY_V1_MAX - 1, "\r\n", 2); /* would end at 108 */
    const struct refusal r[] = {
        {"UNKNOWN, 108 bytes", {line, PROXY_V1_MAX + 1}, PROXY_V1_MAX, "too long"},
    };
    check_refusals(r, 1);
    struct proxy_header h;
    assert_int_equal(parse((struct bytes){line, sizeof(line)}, PROXY_V1_MAX - 1, &h),
                     PROXY_NEED_MORE); /* 106 bytes: "\r" last, the "\n" may come */

    /* A TCP6 line inet_pton accepts whose fields are long: 116 bytes, refused at 107. */
    struct bytes b = B("PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 "
                       "0000:0000:0000:0000:0000:ffff:255.255.255.255 65535 65535\r\n");
    const struct refusal r6[] = {{"TCP6, 116 bytes", b, PROXY_V1_MAX, "too long"}};
    check_refusals(r6, 1);
    /* Nothing is ever NEED_MORE at PROXY_V1_MAX bytes or more. */
    for (size_t k = PROXY_V1_MAX; k < sizeof(line); k++)
        assert_int_equal(parse((struct bytes){line, sizeof(line)}, k, &h), PROXY_INVALID);
}

static void test_proxy_v2_refusals(void **state)
{
    (void)state;
    static const struct refusal r[] = {
        {"version 1", B(V2_SIG "\x11\x11\x00\x0c"), 13, "v2: bad version"},
        {"version 3", B(V2_SIG "\x31\x11\x00\x0c"), 13, "v2: bad version"},
        {"version 0", B(V2_SIG "\x01\x11\x00\x0c"), 13, "v2: bad version"},
        {"command 2", B(V2_SIG "\x22\x11\x00\x0c"), 13, "v2: bad command"},
        {"command 15", B(V2_SIG "\x2f\x00\x00\x00"), 13, "v2: bad command"},
        {"family 4", B(V2_SIG "\x21\x41\x00\x0c"), 14, "v2: bad family"},
        {"protocol 3", B(V2_SIG "\x21\x13\x00\x0c"), 14, "v2: bad family"},
        {"UNSPEC over STREAM", B(V2_SIG "\x21\x01\x00\x00"), 14, "v2: bad family"},
        {"INET, UNSPEC protocol", B(V2_SIG "\x21\x10\x00\x0c"), 14, "v2: bad family"},
        {"IPv4 block of 11",
         B(V2_SIG "\x21\x11\x00\x0b"
                  "\x01\x02\x03\x04\x01\x02\x03\x04\x00\x01\x00"),
         16, "v2: address block too short"},
        {"IPv4 block of 0", B(V2_SIG "\x21\x11\x00\x00"), 16, "v2: address block too short"},
        {"IPv6 block of 12",
         B(V2_SIG "\x21\x21\x00\x0c"
                  "\x01\x02\x03\x04\x01\x02\x03\x04\x00\x01\x00\x02"),
         16, "v2: address block too short"},
        {"UDP over IPv6, 35", B(V2_SIG "\x21\x22\x00\x23"), 16, "v2: address block too short"},
        {"UNIX, 215", B(V2_SIG "\x21\x31\x00\xd7"), 16, "v2: address block too short"},
        {"length 1009", B(V2_SIG "\x21\x11\x03\xf1"), 16, "too long"},
        {"LOCAL, length 65535", B(V2_SIG "\x20\x00\xff\xff"), 16, "too long"},
    };
    check_refusals(r, sizeof(r) / sizeof(r[0]));

    /* A block announced but not all there is a prefix: it needs more, whatever the length. */
    struct bytes cut = B(V2_SIG "\x21\x11\x00\x0c"
                                "\x01\x02\x03\x04\x01\x02\x03");
    struct proxy_header h;
    for (size_t k = 0; k <= cut.len; k++)
        assert_int_equal(parse(cut, k, &h), PROXY_NEED_MORE);
}

/* The reason is NULL for what is not refused, a short line for what is. */
static void test_proxy_reason(void **state)
{
    (void)state;
    struct bytes ok = B("PROXY UNKNOWN\r\n");
    assert_null(reason(ok, ok.len));
    assert_null(reason(ok, 3));
    assert_null(reason(ok, 0));
    struct bytes bad = B("GET /");
    assert_string_equal(reason(bad, bad.len), "bad signature");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_v1_tcp4_from_haproxy),
        cmocka_unit_test(test_proxy_v1_tcp6),
        cmocka_unit_test(test_proxy_v1_unknown),
        cmocka_unit_test(test_proxy_v2_ipv4_from_haproxy),
        cmocka_unit_test(test_proxy_v2_ipv6_from_haproxy),
        cmocka_unit_test(test_proxy_v2_tlvs_from_haproxy),
        cmocka_unit_test(test_proxy_v2_local),
        cmocka_unit_test(test_proxy_v2_unsupported_families_keep_the_socket),
        cmocka_unit_test(test_proxy_v2_longest),
        cmocka_unit_test(test_proxy_bad_signature_early),
        cmocka_unit_test(test_proxy_v1_refusals),
        cmocka_unit_test(test_proxy_v1_too_long),
        cmocka_unit_test(test_proxy_v2_refusals),
        cmocka_unit_test(test_proxy_reason),
    };
    return cmocka_run_group_tests(tests, arena_setup, arena_teardown);
}
