/* Socket address literals: parse IPv4 / IPv6 (bare or bracketed) and format them for the logs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "ringcast/netaddr.h"

/* Parse @host:@port and check it formats as @want. */
static void round_trip(const char *host, int port, int family, const char *want)
{
    union netaddr a;
    socklen_t len = 0;
    char buf[NETADDR_STRLEN];
    if (netaddr_parse(host, port, &a, &len) != 0)
        fail_msg("netaddr_parse('%s', %d) failed", host, port);
    assert_int_equal(a.sa.sa_family, family);
    assert_int_equal(len,
                     family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    assert_ptr_equal(netaddr_format(&a, buf, sizeof(buf)), buf);
    if (strcmp(buf, want) != 0)
        fail_msg("'%s' port %d formats as '%s', want '%s'", host, port, buf, want);
}

static void test_netaddr_ipv4(void **state)
{
    (void)state;
    round_trip("127.0.0.1", 5000, AF_INET, "127.0.0.1:5000");
    round_trip("0.0.0.0", 0, AF_INET, "0.0.0.0:0");
    round_trip("255.255.255.255", 65535, AF_INET, "255.255.255.255:65535");
    round_trip("10.1.2.3", 5, AF_INET, "10.1.2.3:5");

    union netaddr a;
    socklen_t len;
    assert_int_equal(netaddr_parse("192.168.1.20", 8080, &a, &len), 0);
    assert_int_equal(ntohs(a.v4.sin_port), 8080);
    assert_int_equal(ntohl(a.v4.sin_addr.s_addr), 0xc0a80114);
}

static void test_netaddr_ipv6(void **state)
{
    (void)state;
    round_trip("::1", 5, AF_INET6, "[::1]:5");
    round_trip("::", 5000, AF_INET6, "[::]:5000");
    round_trip("fe80::1", 1, AF_INET6, "[fe80::1]:1");
    round_trip("2001:DB8:0:0:0:0:0:1", 443, AF_INET6, "[2001:db8::1]:443");
    round_trip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, AF_INET6,
               "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");

    union netaddr a;
    socklen_t len;
    assert_int_equal(netaddr_parse("::1", 6000, &a, &len), 0);
    assert_int_equal(ntohs(a.v6.sin6_port), 6000);
    assert_true(IN6_IS_ADDR_LOOPBACK(&a.v6.sin6_addr));
}

static void test_netaddr_bracketed(void **state)
{
    (void)state;
    round_trip("[::1]", 5, AF_INET6, "[::1]:5");
    round_trip("[::]", 0, AF_INET6, "[::]:0");
    round_trip("[2001:db8::42]", 9, AF_INET6, "[2001:db8::42]:9");
    round_trip("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]", 1, AF_INET6,
               "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1");
}

/* A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; the logs show the IPv4 address. */
static void test_netaddr_v4_mapped(void **state)
{
    (void)state;
    round_trip("::ffff:10.0.0.1", 7, AF_INET6, "10.0.0.1:7");
    round_trip("[::ffff:192.168.1.2]", 65535, AF_INET6, "192.168.1.2:65535");
    round_trip("::ffff:7f00:1", 5000, AF_INET6, "127.0.0.1:5000");
    /* Not mapped: ::fffe:... and the IPv4-compatible ::a.b.c.d stay IPv6. */
    round_trip("::fffe:a00:1", 7, AF_INET6, "[::fffe:a00:1]:7");
    round_trip("::10.0.0.1", 7, AF_INET6, "[::10.0.0.1]:7");
}

static void test_netaddr_garbage_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "localhost",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "1.2.3.4:80",
        " 127.0.0.1",
        "127.0.0.1 ",
        "[::1",
        "::1]",
        "[1.2.3.4]",
        "[]",
        "[",
        "]",
        "[[::1]]",
        "::1::2",
        ":::",
        "12345::",
        "[::1]:80",
        "fe80::1%lo",
        "0x7f.0.0.1",
        "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255:ffff:ffff:ffff:ffff:ffff:ffff]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        union netaddr a;
        socklen_t len = 1234;
        int r = netaddr_parse(bad[i], 80, &a, &len);
        if (r != -EINVAL)
            fail_msg("netaddr_parse('%s') = %d, want -EINVAL", bad[i], r);
    }
    /* Far longer than any literal, bracketed or not. */
    char longer[300];
    memset(longer, ':', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    union netaddr a;
    socklen_t len;
    assert_int_equal(netaddr_parse(longer, 1, &a, &len), -EINVAL);
    longer[0] = '[';
    longer[sizeof(longer) - 2] = ']';
    assert_int_equal(netaddr_parse(longer, 1, &a, &len), -EINVAL);
}

static void test_netaddr_format_unknown_family_and_short_buffer(void **state)
{
    (void)state;
    union netaddr a;
    memset(&a, 0, sizeof(a));
    a.sa.sa_family = AF_UNIX;
    char buf[NETADDR_STRLEN];
    assert_string_equal(netaddr_format(&a, buf, sizeof(buf)), "?");

    /* A short buffer is cut, NUL-terminated, and not overrun. */
    socklen_t len;
    assert_int_equal(netaddr_parse("2001:db8::1", 443, &a, &len), 0);
    char small[12];
    memset(small, 'Z', sizeof(small));
    netaddr_format(&a, small, 8);
    assert_string_equal(small, "[2001:d");
    for (size_t i = 8; i < sizeof(small); i++)
        assert_int_equal(small[i], 'Z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netaddr_ipv4),
        cmocka_unit_test(test_netaddr_ipv6),
        cmocka_unit_test(test_netaddr_bracketed),
        cmocka_unit_test(test_netaddr_v4_mapped),
        cmocka_unit_test(test_netaddr_garbage_rejected),
        cmocka_unit_test(test_netaddr_format_unknown_family_and_short_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
