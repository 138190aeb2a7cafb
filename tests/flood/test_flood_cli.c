/* Unit tests of flood's command line (bench/flood/cli.c): the read modes (--read-mode, its
 * --copy-reads alias and how --rcvlowat combines with them), the defaults that depend on other
 * options, and bad usage (CLI_ERROR with one line naming the option). */
#include "cli.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* Parses "flood ARGS..." (NULL-terminated). */
static enum cli_result parse(struct flood_opts *o, char *err, size_t errlen, ...)
{
    char *argv[32] = {"flood"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; argc < 31 && (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    err[0] = 0;
    return cli_parse(o, argc, argv, err, errlen);
}

#define PARSE(o, err, ...) parse(o, err, sizeof(err), __VA_ARGS__, (char *)NULL)

static void expect_mode(enum read_mode mode, size_t lowat, const char *a1, const char *a2,
                        const char *a3, const char *a4)
{
    struct flood_opts o;
    char err[256];
    enum cli_result r = PARSE(&o, err, (char *)a1, (char *)a2, (char *)a3, (char *)a4);
    if (r != CLI_RUN)
        fail_msg("%s %s %s %s: %s", a1 ? a1 : "", a2 ? a2 : "", a3 ? a3 : "", a4 ? a4 : "", err);
    assert_string_equal(cli_read_mode_name(o.read_mode), cli_read_mode_name(mode));
    assert_int_equal(o.rcvlowat, lowat);
}

static void test_cli_read_modes(void **state)
{
    (void)state;
    expect_mode(READ_COPY, 0, NULL, NULL, NULL, NULL); /* the default */
    expect_mode(READ_COPY, 0, "--read-mode", "copy", NULL, NULL);
    expect_mode(READ_TRUNC, 0, "--read-mode", "trunc", NULL, NULL);
    expect_mode(READ_LOWAT, 64 * 1024, "--read-mode", "lowat", NULL, NULL);
    expect_mode(READ_LOWAT, 4096, "--read-mode", "lowat", "--rcvlowat", "4K");
}

static void test_cli_read_mode_aliases(void **state)
{
    (void)state;
    /* --copy-reads is --read-mode copy; old scripts pass --rcvlowat 0 with it. */
    expect_mode(READ_COPY, 0, "--copy-reads", NULL, NULL, NULL);
    expect_mode(READ_COPY, 0, "--copy-reads", "--rcvlowat", "0", NULL);
    expect_mode(READ_COPY, 0, "--copy-reads", "--read-mode", "copy", NULL);
    /* A nonzero --rcvlowat is used in any mode; with copy reads that is lowat. */
    expect_mode(READ_LOWAT, 32768, "--rcvlowat", "32K", NULL, NULL);
    expect_mode(READ_LOWAT, 65536, "--copy-reads", "--rcvlowat", "64K", NULL);
    expect_mode(READ_TRUNC, 16384, "--read-mode", "trunc", "--rcvlowat", "16K");
}

static void expect_error(const char *a1, const char *a2, const char *a3, const char *a4,
                         const char *needle)
{
    struct flood_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, (char *)a1, (char *)a2, (char *)a3, (char *)a4), CLI_ERROR);
    if (!strstr(err, needle) || strchr(err, '\n'))
        fail_msg("error \"%s\" should name \"%s\" on one line", err, needle);
}

static void test_cli_read_mode_errors(void **state)
{
    (void)state;
    expect_error("--read-mode", "mmap", NULL, NULL, "--read-mode");
    expect_error("--read-mode", "lowat", "--rcvlowat", "0", "--rcvlowat");
    expect_error("--copy-reads", "--read-mode", "trunc", NULL, "--copy-reads");
    expect_error("--rcvlowat", "65M", NULL, NULL, "--rcvlowat");
    expect_error("--rcvlowat", "lots", NULL, NULL, "--rcvlowat");
}

/* --tls needs a way to trust the server, copy reads, no slow subscribers or churn; --auth is
 * ringcast's (line, len32) and takes its token rules. */
static void test_cli_tls_and_auth(void **state)
{
    (void)state;
    struct flood_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--tls", "--tls-ca", "ca.pem"), CLI_RUN);
    assert_true(o.tls && !o.tls_insecure);
    assert_string_equal(o.tls_ca, "ca.pem");
    assert_int_equal(PARSE(&o, err, "--tls", "--tls-insecure", "--proto", "nats"), CLI_RUN);
    assert_true(o.tls && o.tls_insecure && !o.tls_ca && !o.tls_servername);
    assert_int_equal(PARSE(&o, err, "--proto", "len32", "--auth", "tok3n!"), CLI_RUN);
    assert_string_equal(o.auth, "tok3n!");
    assert_int_equal(PARSE(&o, err, "--subs", "3"), CLI_RUN);
    assert_true(!o.tls && !o.auth);
    expect_error("--tls", NULL, NULL, NULL, "--tls");
    expect_error("--tls", "--tls-insecure", "--tls-ca", "ca.pem", "--tls");
    expect_error("--tls-ca", "ca.pem", NULL, NULL, "--tls");
    expect_error("--tls-servername", "example.com", NULL, NULL, "--tls");
    expect_error("--tls", "--tls-insecure", "--read-mode", "trunc", "--read-mode trunc");
    expect_error("--tls", "--tls-insecure", "--slow-subs", "1", "--slow-subs");
    expect_error("--proto", "redis", "--auth", "x", "--auth");
    expect_error("--auth", "two words", NULL, NULL, "--auth");
}

/* Sizes and seconds go through the project's parsers (opts_parse_size / _seconds). */
static void test_cli_sizes_and_seconds(void **state)
{
    (void)state;
    struct flood_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--size", "1K", "--rcvbuf", "2M", "--slow-rate", "3k",
                           "--duration", "0.5", "--warmup", "0", "--drain-timeout", ".25"),
                     CLI_RUN);
    assert_int_equal(o.size, 1024);
    assert_int_equal(o.rcvbuf, 2 << 20);
    assert_true(o.slow_rate == 3072);
    assert_true(o.duration == 0.5 && o.warmup == 0 && o.drain_timeout == 0.25);
    expect_error("--size", "10", NULL, NULL, "--size");  /* below the header */
    expect_error("--size", "17M", NULL, NULL, "--size"); /* above MSG_MAX_SIZE */
    expect_error("--size", "-64", NULL, NULL, "--size");
    expect_error("--duration", "abc", NULL, NULL, "--duration");
    expect_error("--duration", "-1", NULL, NULL, "--duration");
    expect_error("--duration", "0", NULL, NULL, "--duration"); /* at least 1 ms */
    expect_error("--warmup", "2e6", NULL, NULL, "--warmup");
}

static void test_cli_defaults_and_help(void **state)
{
    (void)state;
    struct flood_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--proto", "redis", "--subs", "4"), CLI_RUN);
    assert_int_equal(o.port, 6379);
    assert_int_equal(o.verify, 4); /* all */
    assert_int_equal(PARSE(&o, err, "--proto", "nats", "--verify", "9", "--subs", "3"), CLI_RUN);
    assert_int_equal(o.port, 4222);
    assert_int_equal(o.verify, 3);
    assert_int_equal(PARSE(&o, err, "--help"), CLI_HELP);
    assert_int_equal(PARSE(&o, err, "-h"), CLI_HELP);
    assert_int_equal(PARSE(&o, err, "--version"), CLI_VERSION);
    expect_error("--count", "5", "--duration", "1", "exclude");
    expect_error("--pubs", "0", "--count", "5", "--count");
    expect_error("--subs", "2", "--port", NULL, "--port");
    expect_error("stray", NULL, NULL, NULL, "stray");
}

/* Every option --help lists (at the start of a line) is one the parser knows: the help and the
 * parser cannot drift (ops_options_flood checks the man page against --help). */
static void test_cli_help_options_known(void **state)
{
    (void)state;
    const char *u = cli_usage();
    assert_non_null(strstr(u, "--read-mode copy|trunc|lowat"));
    assert_non_null(strstr(u, "64K with --read-mode lowat, else 0"));
    int seen = 0;
    for (const char *line = u; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *p = line;
        while (*p == ' ')
            p++;
        if (p - line < 1 || p - line > 4 || *p != '-')
            continue;
        /* The option column: up to two spaces or the end of the line. */
        const char *col_end = strstr(p, "  ");
        const char *eol = strchr(p, '\n');
        if (!col_end || (eol && eol < col_end))
            col_end = eol ? eol : p + strlen(p);
        for (const char *opt = strstr(p, "--"); opt && opt < col_end; opt = strstr(opt, "--")) {
            char name[64];
            size_t n = strspn(opt + 2, "abcdefghijklmnopqrstuvwxyz-") + 2;
            assert_true(n < sizeof(name));
            memcpy(name, opt, n);
            name[n] = 0;
            struct flood_opts o;
            char err[256];
            enum cli_result r = PARSE(&o, err, name);
            if (r == CLI_ERROR && strstr(err, "unknown option"))
                fail_msg("--help lists %s, the parser does not know it", name);
            seen++;
            opt += n;
        }
    }
    assert_true(seen >= 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_read_modes),        cmocka_unit_test(test_cli_read_mode_aliases),
        cmocka_unit_test(test_cli_read_mode_errors),  cmocka_unit_test(test_cli_sizes_and_seconds),
        cmocka_unit_test(test_cli_defaults_and_help), cmocka_unit_test(test_cli_help_options_known),
        cmocka_unit_test(test_cli_tls_and_auth),
    };
    return cmocka_run_group_tests_name("flood_cli", tests, NULL, NULL);
}
