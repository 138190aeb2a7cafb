/* Option parsing: defaults, environment, every flag, size and seconds syntax, every error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "ringcast/opts.h"

/* argv from a list of strings; the list ends at the first NULL (so PARSE(o, a, p, e, NULL) is
 * "no arguments"). The array is writable: GNU getopt permutes it. */
#define ARGS(...) ((char *[]){"ringcast", __VA_ARGS__, NULL})
#define PARSE(o, env_addr, env_port, err, ...)                                                     \
    parse_args((o), (env_addr), (env_port), (err), sizeof(err), ARGS(__VA_ARGS__))

static enum opts_result parse_args(struct opts *o, const char *env_addr, const char *env_port,
                                   char *err, size_t errlen, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    err[0] = '\0';
    return opts_parse(o, argc, argv, env_addr, env_port, err, errlen);
}

/* An error: OPTS_ERROR, and a non-empty one-line message that contains @needle. */
#define EXPECT_ERROR(needle, env_addr, env_port, ...)                                              \
    do {                                                                                           \
        struct opts o_;                                                                            \
        char err_[256];                                                                            \
        enum opts_result r_ = PARSE(&o_, env_addr, env_port, err_, __VA_ARGS__);                   \
        if (r_ != OPTS_ERROR || !err_[0] || strchr(err_, '\n') || !strstr(err_, needle))           \
            fail_msg("expected OPTS_ERROR naming '%s', got %d with message '%s'", needle, (int)r_, \
                     err_);                                                                        \
    } while (0)

static void test_opts_defaults(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, NULL), OPTS_RUN);
    assert_string_equal(o.address, "127.0.0.1");
    assert_int_equal(o.port, 5000);
    assert_int_equal(o.framing, FRAMING_LINE);
    assert_false(o.echo);
    assert_int_equal(o.max_frame, 1u << 20);
    assert_int_equal(o.max_queue, 32u << 20);
    assert_int_equal(o.max_partial_memory, 256u << 20);
    assert_int_equal(o.slow_policy, SLOW_DISCONNECT);
    assert_int_equal(o.max_clients, 10000);
    assert_int_equal(o.max_clients_per_ip, 0);
    assert_int_equal(o.backlog, 0);
    assert_int_equal(o.zerocopy, ZC_AUTO);
    assert_int_equal(o.zc_threshold, 16u << 10);
    assert_true(o.drain_timeout == 5.0);
    assert_true(o.frame_timeout == 30.0);
    assert_true(o.stats_interval == 0.0);
    assert_int_equal(o.verbosity, VERB_NORMAL);
}

static void test_opts_env_sets_address_and_port(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, "::1", "6000", err, NULL), OPTS_RUN);
    assert_string_equal(o.address, "::1");
    assert_int_equal(o.port, 6000);

    /* Empty environment values are as good as unset. */
    assert_int_equal(PARSE(&o, "", "", err, NULL), OPTS_RUN);
    assert_string_equal(o.address, "127.0.0.1");
    assert_int_equal(o.port, 5000);

    /* PORT=0 picks a free port. */
    assert_int_equal(PARSE(&o, NULL, "0", err, NULL), OPTS_RUN);
    assert_int_equal(o.port, 0);
}

static void test_opts_flags_override_env(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, "::1", "6000", err, "--address", "10.1.2.3", "--port", "7000"),
                     OPTS_RUN);
    assert_string_equal(o.address, "10.1.2.3");
    assert_int_equal(o.port, 7000);

    /* Only the one given is overridden; the --flag=value form works too. */
    assert_int_equal(PARSE(&o, "::1", "6000", err, "--port=7001"), OPTS_RUN);
    assert_string_equal(o.address, "::1");
    assert_int_equal(o.port, 7001);
}

static void test_opts_env_errors(void **state)
{
    (void)state;
    EXPECT_ERROR("PORT", NULL, "70000", NULL);
    EXPECT_ERROR("PORT", NULL, "-1", NULL);
    EXPECT_ERROR("PORT", NULL, "80x", NULL);
    char longaddr[100];
    memset(longaddr, 'a', sizeof(longaddr) - 1);
    longaddr[sizeof(longaddr) - 1] = '\0';
    EXPECT_ERROR("ADDRESS", longaddr, NULL, NULL);
}

static void test_opts_every_flag(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    enum opts_result r =
        PARSE(&o, NULL, NULL, err, "--address", "::", "--port", "0", "--framing", "len32", "--echo",
              "--max-frame", "64K", "--max-queue", "2M", "--slow-policy", "drop", "--max-clients",
              "16777216", "--max-partial-memory", "1G", "--frame-timeout", "0.25", "--backlog",
              "128", "--zerocopy", "off", "--zc-threshold", "0", "--drain-timeout", "1.5",
              "--stats-interval", "2", "-q");
    assert_int_equal(r, OPTS_RUN);
    assert_string_equal(o.address, "::");
    assert_int_equal(o.port, 0);
    assert_int_equal(o.framing, FRAMING_LEN32);
    assert_true(o.echo);
    assert_int_equal(o.max_frame, 64u << 10);
    assert_int_equal(o.max_queue, 2u << 20);
    assert_int_equal(o.slow_policy, SLOW_DROP);
    assert_int_equal(o.max_clients, 16777216);
    assert_int_equal(o.max_partial_memory, 1u << 30);
    assert_true(o.frame_timeout == 0.25);
    assert_int_equal(o.backlog, 128);
    assert_int_equal(o.zerocopy, ZC_OFF);
    assert_int_equal(o.zc_threshold, 0);
    assert_true(o.drain_timeout == 1.5);
    assert_true(o.stats_interval == 2.0);
    assert_int_equal(o.verbosity, VERB_QUIET);

    assert_int_equal(PARSE(&o, NULL, NULL, err, "--framing", "line", "--slow-policy", "disconnect",
                           "--zerocopy", "on", "--verbose"),
                     OPTS_RUN);
    assert_int_equal(o.framing, FRAMING_LINE);
    assert_int_equal(o.slow_policy, SLOW_DISCONNECT);
    assert_int_equal(o.zerocopy, ZC_ON);
    assert_int_equal(o.verbosity, VERB_VERBOSE);

    assert_int_equal(PARSE(&o, NULL, NULL, err, "--zerocopy", "auto", "-v", "--quiet"), OPTS_RUN);
    assert_int_equal(o.zerocopy, ZC_AUTO);
    assert_int_equal(o.verbosity, VERB_QUIET);

    /* Short flags cluster; the last one wins. */
    assert_int_equal(PARSE(&o, NULL, NULL, err, "-qv"), OPTS_RUN);
    assert_int_equal(o.verbosity, VERB_VERBOSE);
}

static void test_opts_size_suffixes(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        {"0", 0},
        {"1", 1},
        {"4096", 4096},
        {"1K", 1024},
        {"1k", 1024},
        {"64K", 64 << 10},
        {"8M", 8 << 20},
        {"8m", 8 << 20},
        {"1G", 1ull << 30},
        {"3g", 3ull << 30},
        {"1Ki", 1024},
        {"1KB", 1024},
        {"1KiB", 1024},
        {"2MiB", 2 << 20},
        {"007", 7},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183G", 17179869183ull << 30},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 12345;
        if (opts_parse_size(ok[i].s, &v) != 0 || v != ok[i].v)
            fail_msg("opts_parse_size('%s') gave %llu, want %llu", ok[i].s, (unsigned long long)v,
                     (unsigned long long)ok[i].v);
    }
}

static void test_opts_size_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "K", "-1", "+1", " 1", "1.5M", "1X", "1KX", "1KiBB", "1 K", "1T", "0x10", "1e3", "1KBi",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 12345;
        int r = opts_parse_size(bad[i], &v);
        if (r != -EINVAL || v != 12345)
            fail_msg("opts_parse_size('%s') = %d (value %llu), want -EINVAL", bad[i], r,
                     (unsigned long long)v);
    }
    uint64_t v = 12345;
    assert_int_equal(opts_parse_size(NULL, &v), -EINVAL);
    assert_int_equal(opts_parse_size("18446744073709551616", &v), -ERANGE);
    assert_int_equal(opts_parse_size("17179869184G", &v), -ERANGE);
    assert_int_equal(opts_parse_size("17592186044416M", &v), -ERANGE);
    assert_int_equal(v, 12345);
}

/* " 1" and "-1" are rejected, so other leading whitespace must not smuggle a sign past the check:
 * strtoull() skips any whitespace, then accepts '-' and negates ("\t-1" would be 2^64 - 1). */
static void test_opts_size_rejects_leading_whitespace(void **state)
{
    (void)state;
    static const struct {
        const char *s, *shown;
    } bad[] = {{"\t-1", "\\t-1"}, {"\v-1K", "\\v-1K"}, {"\t1", "\\t1"}, {"\n1", "\\n1"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 12345;
        if (opts_parse_size(bad[i].s, &v) == 0)
            fail_msg("opts_parse_size(\"%s\") accepted, value %llu; want -EINVAL", bad[i].shown,
                     (unsigned long long)v);
    }
    /* Through the flags: a "negative" partial-memory budget must not become 16 EiB. */
    EXPECT_ERROR("--max-partial-memory", NULL, NULL, "--max-partial-memory", "\t-1");
}

static void test_opts_seconds(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        double v;
    } ok[] = {
        {"0", 0}, {"5", 5}, {"0.5", 0.5}, {"1.25", 1.25}, {".5", 0.5}, {"30", 30}, {"1e9", 1e9},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        double v = -1;
        if (opts_parse_seconds(ok[i].s, &v) != 0 || v != ok[i].v)
            fail_msg("opts_parse_seconds('%s') gave %g, want %g", ok[i].s, v, ok[i].v);
    }
    static const char *const bad[] = {"",    "-1",  "-0.5", " 1",   "abc", "1s",
                                      "nan", "inf", "1e10", "1.5x", "\t-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        double v = 42;
        int r = opts_parse_seconds(bad[i], &v);
        if (r != -EINVAL || v != 42)
            fail_msg("opts_parse_seconds('%s') = %d (value %g), want -EINVAL", bad[i], r, v);
    }
    double v = 42;
    assert_int_equal(opts_parse_seconds(NULL, &v), -EINVAL);
}

static void test_opts_fractional_seconds_flags(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--frame-timeout", "0", "--drain-timeout", "0.1",
                           "--stats-interval", "0.5"),
                     OPTS_RUN);
    assert_true(o.frame_timeout == 0.0);
    assert_true(o.drain_timeout == 0.1);
    assert_true(o.stats_interval == 0.5);
}

static void test_opts_size_flags_limits(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    /* --max-frame may equal --max-queue; both are bounded by 1G. */
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--max-frame", "1G", "--max-queue", "1G"),
                     OPTS_RUN);
    assert_int_equal(o.max_frame, 1u << 30);
    assert_int_equal(o.max_queue, 1u << 30);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--max-frame", "1", "--max-queue", "1"), OPTS_RUN);
    assert_int_equal(o.max_frame, 1);
    EXPECT_ERROR("--max-frame", NULL, NULL, "--max-frame", "0");
    EXPECT_ERROR("--max-frame", NULL, NULL, "--max-frame", "2G", "--max-queue", "2G");
    EXPECT_ERROR("--max-queue", NULL, NULL, "--max-queue", "0");
    EXPECT_ERROR("--max-queue", NULL, NULL, "--max-queue", "1073741825");
    EXPECT_ERROR("--max-partial-memory", NULL, NULL, "--max-partial-memory", "0");
    EXPECT_ERROR("--max-clients", NULL, NULL, "--max-clients", "0");
    EXPECT_ERROR("--max-clients", NULL, NULL, "--max-clients", "16777217");
    EXPECT_ERROR("--backlog", NULL, NULL, "--backlog", "0");
    EXPECT_ERROR("--backlog", NULL, NULL, "--backlog", "-5");
}

/* --max-clients-per-ip: 0 (off) to 16777216, like --max-clients; it may exceed --max-clients. */
static void test_opts_max_clients_per_ip(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--max-clients-per-ip", "2"), OPTS_RUN);
    assert_int_equal(o.max_clients_per_ip, 2);
    assert_int_equal(o.max_clients, 10000);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--max-clients-per-ip=0"), OPTS_RUN);
    assert_int_equal(o.max_clients_per_ip, 0);
    assert_int_equal(
        PARSE(&o, NULL, NULL, err, "--max-clients", "3", "--max-clients-per-ip", "16777216"),
        OPTS_RUN);
    assert_int_equal(o.max_clients_per_ip, 16777216);
    /* --max-clients itself is still matched exactly, not as an abbreviation. */
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--max-clients", "7"), OPTS_RUN);
    assert_int_equal(o.max_clients, 7);
    assert_int_equal(o.max_clients_per_ip, 0);
    EXPECT_ERROR("--max-clients-per-ip", NULL, NULL, "--max-clients-per-ip", "16777217");
    EXPECT_ERROR("--max-clients-per-ip", NULL, NULL, "--max-clients-per-ip", "-1");
    EXPECT_ERROR("--max-clients-per-ip", NULL, NULL, "--max-clients-per-ip", " 2");
    EXPECT_ERROR("--max-clients-per-ip", NULL, NULL, "--max-clients-per-ip", "2x");
    EXPECT_ERROR("--max-clients-per-ip", NULL, NULL, "--max-clients-per-ip", "");
    EXPECT_ERROR("--max-clients-per-ip", NULL, NULL, "--max-clients-per-ip", "two");
    EXPECT_ERROR("--max-clients-per-ip", NULL, NULL, "--max-clients-per-ip");
}

/* --auth-file: kept as given (read at start, not here); --auth-timeout: more than 0 seconds. */
static void test_opts_auth(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--port", "1"), OPTS_RUN);
    assert_string_equal(o.auth_file, "");
    assert_true(o.auth_timeout == 5);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--auth-file", "/run/credentials/x/auth",
                           "--auth-timeout", "0.5"),
                     OPTS_RUN);
    assert_string_equal(o.auth_file, "/run/credentials/x/auth");
    assert_true(o.auth_timeout == 0.5);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--listen", "127.0.0.1:0,role=sub,noauth"),
                     OPTS_RUN);
    assert_true(o.listen[0].noauth);
    EXPECT_ERROR("--auth-timeout", NULL, NULL, "--auth-timeout", "0");
    EXPECT_ERROR("--auth-timeout", NULL, NULL, "--auth-timeout", "-1");
    EXPECT_ERROR("--auth-timeout", NULL, NULL, "--auth-timeout", "abc");
    EXPECT_ERROR("--auth-file", NULL, NULL, "--auth-file", "");
    EXPECT_ERROR("--auth-file", NULL, NULL, "--auth-file");
    char longpath[1100];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    EXPECT_ERROR("--auth-file", NULL, NULL, "--auth-file", longpath);
}

/* TLS options: paths kept as given (read at start), flags on --listen, the handshake cap. */
static void test_opts_tls(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--port", "1"), OPTS_RUN);
    assert_int_equal(o.max_tls_handshakes, 256);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--listen", "127.0.0.1:0,proxy,tls,role=sub",
                           "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem",
                           "--max-tls-handshakes", "3"),
                     OPTS_RUN);
    assert_true(o.listen[0].tls && o.listen[0].proxy && !o.listen[0].noauth);
    assert_int_equal(o.listen[0].role, ROLE_SUB);
    assert_string_equal(o.listen[0].flags, "proxy,tls,role=sub");
    assert_string_equal(o.tls_cert, "c.pem");
    assert_string_equal(o.tls_key, "k.pem");
    assert_string_equal(o.tls_client_ca, "ca.pem");
    assert_int_equal(o.max_tls_handshakes, 3);
    EXPECT_ERROR("--max-tls-handshakes", NULL, NULL, "--max-tls-handshakes", "0");
    EXPECT_ERROR("--tls-cert", NULL, NULL, "--tls-cert", "");
}

/* --listen: repeatable, in order, beside the default listener; the flags kept for the start line
 * as given, with the role first when it was left out. */
static void test_opts_listen(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, NULL), OPTS_RUN);
    assert_int_equal(o.nlisten, 0);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--listen", "127.0.0.1:0,role=sub", "--port",
                           "6000", "--listen=[::1]:7001,role=pub,noauth", "--listen",
                           "0.0.0.0:7002", "--listen", "[::]:7003,noauth,role=both", "--listen",
                           "10.0.0.1:65535,noauth"),
                     OPTS_RUN);
    assert_int_equal(o.port, 6000); /* the default listener is unchanged */
    assert_string_equal(o.address, "127.0.0.1");
    assert_int_equal(o.nlisten, 5);
    assert_string_equal(o.listen[0].address, "127.0.0.1");
    assert_int_equal(o.listen[0].port, 0);
    assert_int_equal(o.listen[0].role, ROLE_SUB);
    assert_false(o.listen[0].noauth);
    assert_string_equal(o.listen[0].flags, "role=sub");
    assert_string_equal(o.listen[1].address, "[::1]");
    assert_int_equal(o.listen[1].port, 7001);
    assert_int_equal(o.listen[1].role, ROLE_PUB);
    assert_true(o.listen[1].noauth);
    assert_string_equal(o.listen[1].flags, "role=pub,noauth");
    assert_string_equal(o.listen[2].address, "0.0.0.0");
    assert_int_equal(o.listen[2].role, ROLE_BOTH);
    assert_string_equal(o.listen[2].flags, "role=both");
    assert_string_equal(o.listen[3].address, "[::]");
    assert_int_equal(o.listen[3].role, ROLE_BOTH);
    assert_true(o.listen[3].noauth);
    assert_string_equal(o.listen[3].flags, "noauth,role=both");
    assert_int_equal(o.listen[4].port, 65535);
    assert_string_equal(o.listen[4].flags, "role=both,noauth");
    assert_string_equal(opts_role_name(ROLE_BOTH), "both");
    assert_string_equal(opts_role_name(ROLE_PUB), "pub");
    assert_string_equal(opts_role_name(ROLE_SUB), "sub");

    /* A second parse starts again from none. */
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--listen", "127.0.0.1:1"), OPTS_RUN);
    assert_int_equal(o.nlisten, 1);
    assert_int_equal(o.listen[0].port, 1);
}

/* Eight extra listeners at most; a ninth is a usage error that says so. */
static void test_opts_listen_at_most_eight(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--listen", "127.0.0.1:1", "--listen",
                           "127.0.0.1:2", "--listen", "127.0.0.1:3", "--listen", "127.0.0.1:4",
                           "--listen", "127.0.0.1:5", "--listen", "127.0.0.1:6", "--listen",
                           "127.0.0.1:7", "--listen", "127.0.0.1:8"),
                     OPTS_RUN);
    assert_int_equal(o.nlisten, OPTS_LISTEN_MAX);
    assert_int_equal(o.listen[7].port, 8);
    EXPECT_ERROR("at most 8", NULL, NULL, "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2",
                 "--listen", "127.0.0.1:3", "--listen", "127.0.0.1:4", "--listen", "127.0.0.1:5",
                 "--listen", "127.0.0.1:6", "--listen", "127.0.0.1:7", "--listen", "127.0.0.1:8",
                 "--listen", "127.0.0.1:9");
}

/* Every way a --listen value can be wrong is a one-line usage error naming the problem. */
static void test_opts_listen_errors(void **state)
{
    (void)state;
    /* Addresses: IP literals only, with the --address hint; IPv6 in brackets. */
    EXPECT_ERROR("host names are not resolved", NULL, NULL, "--listen", "localhost:5000");
    EXPECT_ERROR("--listen: 'example.com' is not an IPv4 or IPv6 literal", NULL, NULL, "--listen",
                 "example.com:5000,role=sub");
    EXPECT_ERROR("not an IPv4 or IPv6 literal", NULL, NULL, "--listen", ":5000");
    EXPECT_ERROR("not an IPv4 or IPv6 literal", NULL, NULL, "--listen", "1.2.3:5000");
    EXPECT_ERROR("not an IPv4 or IPv6 literal", NULL, NULL, "--listen", "[127.0.0.1]:5000");
    EXPECT_ERROR("in brackets", NULL, NULL, "--listen", "::1:5000");
    EXPECT_ERROR("expected ADDR:PORT", NULL, NULL, "--listen", "[::1]");
    EXPECT_ERROR("expected ADDR:PORT", NULL, NULL, "--listen", "127.0.0.1");
    EXPECT_ERROR("expected ADDR:PORT", NULL, NULL, "--listen", "");
    EXPECT_ERROR("expected ADDR:PORT", NULL, NULL, "--listen", ",role=sub");
    char longaddr[100];
    memset(longaddr, '1', sizeof(longaddr) - 1);
    longaddr[sizeof(longaddr) - 1] = '\0';
    memcpy(longaddr + 90, ":5000", 6);
    EXPECT_ERROR("not an IPv4 or IPv6 literal", NULL, NULL, "--listen", longaddr);
    /* Ports. */
    EXPECT_ERROR("port must be 0-65535", NULL, NULL, "--listen", "127.0.0.1:");
    EXPECT_ERROR("port must be 0-65535", NULL, NULL, "--listen", "127.0.0.1:65536");
    EXPECT_ERROR("port must be 0-65535", NULL, NULL, "--listen", "127.0.0.1:-1");
    EXPECT_ERROR("port must be 0-65535", NULL, NULL, "--listen", "127.0.0.1:+80");
    EXPECT_ERROR("port must be 0-65535", NULL, NULL, "--listen", "127.0.0.1:80x,role=sub");
    EXPECT_ERROR("port must be 0-65535", NULL, NULL, "--listen", "127.0.0.1:99999999999");
    EXPECT_ERROR("port must be 0-65535", NULL, NULL, "--listen", "[::1]:http");
    /* Flags: known ones only, each once, none empty. */
    EXPECT_ERROR("unknown flag 'tlsv1'", NULL, NULL, "--listen", "127.0.0.1:0,tlsv1");
    EXPECT_ERROR("tls given twice", NULL, NULL, "--listen", "127.0.0.1:0,tls,tls");
    EXPECT_ERROR("proxy given twice", NULL, NULL, "--listen", "127.0.0.1:0,proxy,proxy");
    /* A tls listener needs the certificate and its key. */
    EXPECT_ERROR("needs --tls-cert and --tls-key", NULL, NULL, "--listen", "127.0.0.1:0,tls");
    EXPECT_ERROR("needs --tls-cert and --tls-key", NULL, NULL, "--listen", "127.0.0.1:0,tls",
                 "--tls-cert", "c.pem");
    EXPECT_ERROR("unknown flag 'ROLE=sub'", NULL, NULL, "--listen", "127.0.0.1:0,ROLE=sub");
    EXPECT_ERROR("unknown flag 'role'", NULL, NULL, "--listen", "127.0.0.1:0,role");
    EXPECT_ERROR("unknown role 'subscriber'", NULL, NULL, "--listen",
                 "127.0.0.1:0,role=subscriber");
    EXPECT_ERROR("unknown role ''", NULL, NULL, "--listen", "127.0.0.1:0,role=");
    EXPECT_ERROR("role given twice", NULL, NULL, "--listen", "127.0.0.1:0,role=sub,role=pub");
    EXPECT_ERROR("role given twice", NULL, NULL, "--listen", "127.0.0.1:0,role=sub,role=sub");
    EXPECT_ERROR("noauth given twice", NULL, NULL, "--listen", "127.0.0.1:0,noauth,noauth");
    EXPECT_ERROR("an empty flag", NULL, NULL, "--listen", "127.0.0.1:0,");
    EXPECT_ERROR("an empty flag", NULL, NULL, "--listen", "127.0.0.1:0,,noauth");
    EXPECT_ERROR("an empty flag", NULL, NULL, "--listen", "127.0.0.1:0,role=sub,");
    EXPECT_ERROR("--listen", NULL, NULL, "--listen");
    /* A bad one among good ones is still an error. */
    EXPECT_ERROR("unknown flag", NULL, NULL, "--listen", "127.0.0.1:0", "--listen",
                 "127.0.0.1:0,rol=sub");
    EXPECT_ERROR("unknown flag '?x'", NULL, NULL, "--listen", "127.0.0.1:0,\nx");
}

static void test_opts_max_frame_above_max_queue(void **state)
{
    (void)state;
    /* Against the default --max-queue (32M), and against an explicit one in either order. */
    EXPECT_ERROR("--max-frame", NULL, NULL, "--max-frame", "64M");
    EXPECT_ERROR("--max-frame", NULL, NULL, "--max-frame", "2M", "--max-queue", "1M");
    EXPECT_ERROR("--max-queue", NULL, NULL, "--max-queue", "1M", "--max-frame", "2M");
    EXPECT_ERROR("--max-frame", NULL, NULL, "--max-queue", "512K");
}

/* --pace-window: 1M by default, at most half of --max-queue; never above --max-queue when set. */
static void test_opts_pace_window(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, NULL), OPTS_RUN);
    assert_int_equal(o.pace_window, 1u << 20);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--max-queue", "64K", "--max-frame", "1K"),
                     OPTS_RUN);
    assert_int_equal(o.pace_window, 32u << 10); /* half a small quota */
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--pace-window", "256K"), OPTS_RUN);
    assert_int_equal(o.pace_window, 256u << 10);
    EXPECT_ERROR("--pace-window", NULL, NULL, "--pace-window", "64M");
    EXPECT_ERROR("--pace-window", NULL, NULL, "--pace-window", "0");
    EXPECT_ERROR("--pace-window", NULL, NULL, "--max-queue", "1M", "--pace-window", "2M");
}

static void test_opts_unknown_flag(void **state)
{
    (void)state;
    EXPECT_ERROR("--bogus", NULL, NULL, "--bogus");
    EXPECT_ERROR("--bogus", NULL, NULL, "--port", "1", "--bogus", "x");
    EXPECT_ERROR("-x", NULL, NULL, "-x");
    EXPECT_ERROR("--echo", NULL, NULL, "--echo=yes");
}

static void test_opts_unknown_short_flag_in_cluster(void **state)
{
    (void)state;
    /* The unknown 'x' is not the last letter of its cluster: optind has not moved yet. */
    EXPECT_ERROR("-x", NULL, NULL, "-xq");
}

static void test_opts_missing_value(void **state)
{
    (void)state;
    EXPECT_ERROR("--port", NULL, NULL, "--port");
    EXPECT_ERROR("--max-frame", NULL, NULL, "--echo", "--max-frame");
    EXPECT_ERROR("--framing", NULL, NULL, "--framing");
    EXPECT_ERROR("--address", NULL, NULL, "--address");
    EXPECT_ERROR("--frame-timeout", NULL, NULL, "--frame-timeout");
    /* "--port=" gives an empty value, which is invalid, not missing. */
    EXPECT_ERROR("--port", NULL, NULL, "--port=");
    EXPECT_ERROR("--address", NULL, NULL, "--address=");
}

static void test_opts_bad_numbers(void **state)
{
    (void)state;
    EXPECT_ERROR("--port", NULL, NULL, "--port", "abc");
    EXPECT_ERROR("--port", NULL, NULL, "--port", "70000");
    EXPECT_ERROR("--port", NULL, NULL, "--port", "65536");
    EXPECT_ERROR("--port", NULL, NULL, "--port", "-1");
    EXPECT_ERROR("--port", NULL, NULL, "--port", "+80");
    EXPECT_ERROR("--port", NULL, NULL, "--port", " 80");
    EXPECT_ERROR("--port", NULL, NULL, "--port", "80 ");
    EXPECT_ERROR("--port", NULL, NULL, "--port", "99999999999999999999999");
    EXPECT_ERROR("--max-frame", NULL, NULL, "--max-frame", "12Q");
    EXPECT_ERROR("--max-frame", NULL, NULL, "--max-frame", "-1");
    EXPECT_ERROR("--max-queue", NULL, NULL, "--max-queue", "1.5M");
    EXPECT_ERROR("--zc-threshold", NULL, NULL, "--zc-threshold", "lots");
    EXPECT_ERROR("--max-partial-memory", NULL, NULL, "--max-partial-memory", "");
    EXPECT_ERROR("--max-clients", NULL, NULL, "--max-clients", "ten");
    EXPECT_ERROR("--frame-timeout", NULL, NULL, "--frame-timeout", "x");
    EXPECT_ERROR("--frame-timeout", NULL, NULL, "--frame-timeout", "-1");
    EXPECT_ERROR("--drain-timeout", NULL, NULL, "--drain-timeout", "5s");
    EXPECT_ERROR("--stats-interval", NULL, NULL, "--stats-interval", "inf");

    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--port", "65535"), OPTS_RUN);
    assert_int_equal(o.port, 65535);
}

static void test_opts_bad_enums(void **state)
{
    (void)state;
    EXPECT_ERROR("--framing", NULL, NULL, "--framing", "lines");
    EXPECT_ERROR("--framing", NULL, NULL, "--framing", "LINE");
    EXPECT_ERROR("--framing", NULL, NULL, "--framing", "");
    EXPECT_ERROR("--slow-policy", NULL, NULL, "--slow-policy", "kill");
    EXPECT_ERROR("--zerocopy", NULL, NULL, "--zerocopy", "maybe");
    EXPECT_ERROR("--zerocopy", NULL, NULL, "--zerocopy", "1");
}

static void test_opts_stray_argument(void **state)
{
    (void)state;
    EXPECT_ERROR("foo", NULL, NULL, "foo");
    EXPECT_ERROR("foo", NULL, NULL, "--port", "1", "foo");
    EXPECT_ERROR("foo", NULL, NULL, "foo", "--port", "1"); /* getopt permutes it to the end */
    EXPECT_ERROR("bar", NULL, NULL, "--", "bar");
}

static void test_opts_address_too_long(void **state)
{
    (void)state;
    /* The longest IPv6 literal fits. */
    static char longest[] = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--address", longest), OPTS_RUN);
    assert_string_equal(o.address, longest);
    char longer[65];
    memset(longer, '1', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    EXPECT_ERROR("--address", NULL, NULL, "--address", longer);
    longer[63] = '\0'; /* fits, but is no literal */
    EXPECT_ERROR("--address", NULL, NULL, "--address", longer);
}

/* Names are not resolved: the message says so, for the flag and the environment alike. */
static void test_opts_address_not_literal(void **state)
{
    (void)state;
    EXPECT_ERROR("host names are not resolved", NULL, NULL, "--address", "localhost");
    EXPECT_ERROR("--address: 'example.com' is not an IPv4 or IPv6 literal", NULL, NULL, "--address",
                 "example.com");
    EXPECT_ERROR("ADDRESS: 'localhost'", "localhost", NULL, "--port", "1");
    EXPECT_ERROR("--address", NULL, NULL, "--address", "127.0.0.1:5000");
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--address", "[::1]"), OPTS_RUN);
}

static void test_opts_help_and_version(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--help"), OPTS_HELP);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--version"), OPTS_VERSION);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--port", "1", "--help"), OPTS_HELP);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "-h"), OPTS_HELP);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "-qh"), OPTS_HELP);
    assert_int_equal(PARSE(&o, NULL, NULL, err, NULL), OPTS_RUN);
    assert_false(o.log_timestamps);
    assert_int_equal(PARSE(&o, NULL, NULL, err, "--log-timestamps"), OPTS_RUN);
    assert_true(o.log_timestamps);
    const char *u = opts_usage();
    assert_non_null(u);
    assert_non_null(strstr(u, "--max-frame"));
    assert_non_null(strstr(u, "--help"));
    assert_string_equal(opts_framing_name(FRAMING_LINE), "line");
    assert_string_equal(opts_framing_name(FRAMING_LEN32), "len32");
}

/* opts_parse resets getopt: an error in one call does not leak into the next. */
static void test_opts_repeated_calls(void **state)
{
    (void)state;
    struct opts o;
    char err[256];
    for (int i = 0; i < 3; i++) {
        EXPECT_ERROR("--bogus", NULL, NULL, "--echo", "--bogus");
        EXPECT_ERROR("--port", NULL, NULL, "--port");
        assert_int_equal(PARSE(&o, NULL, NULL, err, "--port", "1234", "-q"), OPTS_RUN);
        assert_int_equal(o.port, 1234);
        assert_false(o.echo);
        assert_int_equal(PARSE(&o, NULL, NULL, err, NULL), OPTS_RUN);
        assert_int_equal(o.port, 5000);
        assert_int_equal(o.verbosity, VERB_NORMAL);
    }
}

/* The message is cut to errlen, never overflows it. */
static void test_opts_error_message_truncated(void **state)
{
    (void)state;
    struct opts o;
    char err[16 + 8];
    memset(err, 'Z', sizeof(err));
    char *argv[] = {"ringcast", "--framing", "something-rather-long", NULL};
    assert_int_equal(opts_parse(&o, 3, argv, NULL, NULL, err, 16), OPTS_ERROR);
    assert_int_equal(strlen(err), 15);
    for (size_t i = 16; i < sizeof(err); i++)
        assert_int_equal(err[i], 'Z');
}

/* A value with a newline in it still gives a one-line message (found by tests/fuzz opts). */
static void test_opts_error_message_one_line_with_control_characters(void **state)
{
    (void)state;
    EXPECT_ERROR("unknown option '--?x'", NULL, NULL, "--\nx");
    EXPECT_ERROR("invalid --framing 'a?b?'", NULL, NULL, "--framing", "a\rb\x1b");
    EXPECT_ERROR("invalid PORT '?'", NULL, "\n", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts_defaults),
        cmocka_unit_test(test_opts_env_sets_address_and_port),
        cmocka_unit_test(test_opts_flags_override_env),
        cmocka_unit_test(test_opts_env_errors),
        cmocka_unit_test(test_opts_every_flag),
        cmocka_unit_test(test_opts_size_suffixes),
        cmocka_unit_test(test_opts_size_errors),
        cmocka_unit_test(test_opts_size_rejects_leading_whitespace),
        cmocka_unit_test(test_opts_seconds),
        cmocka_unit_test(test_opts_fractional_seconds_flags),
        cmocka_unit_test(test_opts_size_flags_limits),
        cmocka_unit_test(test_opts_max_clients_per_ip),
        cmocka_unit_test(test_opts_auth),
        cmocka_unit_test(test_opts_tls),
        cmocka_unit_test(test_opts_listen),
        cmocka_unit_test(test_opts_listen_at_most_eight),
        cmocka_unit_test(test_opts_listen_errors),
        cmocka_unit_test(test_opts_max_frame_above_max_queue),
        cmocka_unit_test(test_opts_pace_window),
        cmocka_unit_test(test_opts_unknown_flag),
        cmocka_unit_test(test_opts_unknown_short_flag_in_cluster),
        cmocka_unit_test(test_opts_missing_value),
        cmocka_unit_test(test_opts_bad_numbers),
        cmocka_unit_test(test_opts_bad_enums),
        cmocka_unit_test(test_opts_stray_argument),
        cmocka_unit_test(test_opts_address_too_long),
        cmocka_unit_test(test_opts_address_not_literal),
        cmocka_unit_test(test_opts_help_and_version),
        cmocka_unit_test(test_opts_repeated_calls),
        cmocka_unit_test(test_opts_error_message_truncated),
        cmocka_unit_test(test_opts_error_message_one_line_with_control_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
